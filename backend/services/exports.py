"""GGUF exports as jobs (the ``export`` kind), and the finished exports under ``OUTPUTS_DIR/exports``.

The work runs in the training process runner (:func:`backend.services.training.run_worker`, mode ``export``), so
a crash in llama.cpp while the file is checked ends that process, not the server. Everything is written into a
hidden staging folder, ``exports/.tmp-<job id>``, renamed to ``exports/<job id>`` only once the file has passed
its check: a cancelled, failed or interrupted export leaves no half file behind, and a resume starts it again.

An export folder holds ``<name>.gguf``, its Ollama ``Modelfile`` and ``export.json`` (:class:`ExportInfo`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.errors import (
    ExportNotFoundError,
    InsufficientDiskError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotLoadedError,
)
from backend.schemas.exports import (
    ExportInfo,
    ExportJob,
    ExportOptions,
    ExportRequest,
    ExportSpec,
    QuantizationOption,
)
from backend.schemas.job_base import JobProgress
from backend.services import export_gguf
from backend.services.adapters import AdapterService
from backend.services.jobs import JobKind, JobRun
from backend.services.model_files import context_length, inspect_folder
from backend.services.model_service import ModelService
from backend.services.training import run_worker

EXPORT_ID = re.compile(r"^[0-9a-f]{12}$")
META = "export.json"


class ExportKind(JobKind[ExportJob]):
    name = "export"
    schema = ExportJob
    phases = ("queued", "preparing", "merging", "exporting", "verifying")
    resumable = True  # a rerun writes the file again from the start
    serial = True  # one at a time: each holds a model in memory

    def __init__(self, settings: Settings, models: ModelService, adapters: AdapterService) -> None:
        self.settings = settings
        self.models = models
        self.adapters = adapters

    @property
    def root(self) -> Path:
        return self.settings.outputs_path / "exports"

    # ----------------------------------------------------------------- before any work

    def _source(self, model_id: str | None, adapter_id: str | None) -> tuple[Path, str, str | None, str | None]:
        """``(model folder, model id, adapter id, adapter folder)``; the loaded model (and its adapter) by default."""
        if adapter_id is not None:
            info = self.adapters.get(adapter_id)
            base = Path(info.base_model_path)
            if model_id is not None and self.models.resolve_local(model_id, from_request=True)[0] != base.resolve():
                raise InvalidRequestError(
                    f"Adapter '{info.name}' was trained on '{info.base_model_id}', not '{model_id}'; leave model_id "
                    "out to export it with its base.",
                    adapter_id=adapter_id,
                    base_model_id=info.base_model_id,
                )
            if not base.is_dir():
                raise ModelNotFoundError(
                    f"The adapter's base model '{info.base_model_id}' is no longer at {base}.",
                    model_id=info.base_model_id,
                )
            return base, info.base_model_id, adapter_id, info.path
        if model_id is not None:
            path, resolved, _ = self.models.resolve_local(model_id, from_request=True)
            return path, resolved, None, None
        loaded = self.models.cache.current
        if loaded is None:
            raise ModelNotLoadedError("Pass model_id (or adapter_id), or load the model to export first.")
        attached = loaded.metadata.adapter
        if attached is not None:
            return (
                Path(loaded.metadata.path),
                loaded.metadata.model_id,
                attached.id,
                self.adapters.get(attached.id).path,
            )
        return Path(loaded.metadata.path), loaded.metadata.model_id, None, None

    def options(self, model_id: str | None = None, adapter_id: str | None = None) -> ExportOptions:
        """What the model can be exported as, each type's expected size, and whether the architecture is
        supported, without touching the weights."""
        path, resolved, adapter, _ = self._source(model_id, adapter_id)
        files = inspect_folder(path, count_pickle_params=True)
        reason = None
        try:
            export_gguf.check_architecture(files.config or {})
            if files.format != "safetensors":
                raise InvalidRequestError(f"GGUF export reads safetensors weights; '{resolved}' has {files.format}.")
        except InvalidRequestError as exc:
            reason = exc.message
        params = files.num_parameters or 0
        k_ready = export_gguf.k_quants_available()
        quantizations = [
            QuantizationOption(
                name=name,
                expected_bytes=export_gguf.expected_bytes(params, name),
                available=name in export_gguf.NUMPY_TYPES or k_ready,
                reason=None if name in export_gguf.NUMPY_TYPES or k_ready else export_gguf.k_quant_unavailable(name),
                check=export_gguf.BOUNDS[name].describe(),
            )
            for name in export_gguf.QUANTIZATIONS
        ]
        return ExportOptions(
            model_id=resolved,
            adapter_id=adapter,
            architecture=files.architecture,
            supported=reason is None,
            reason=reason,
            num_parameters=files.num_parameters,
            context_length=context_length(files.config),
            quantizations=quantizations,
            supported_architectures=sorted(export_gguf.ARCHITECTURES),
        )

    def start(self, request: ExportRequest) -> ExportJob:
        """Start an export: 202 with the job. Refused before any work (400) for an unsupported architecture, a
        K-quant without llama.cpp's quantizer, or a name that is not a file name; 507 without the disk space."""
        options = self.options(request.model_id, request.adapter_id)
        if not options.supported:
            raise InvalidRequestError(options.reason or "This model cannot be exported.", model_id=options.model_id)
        chosen = next(q for q in options.quantizations if q.name == request.quantization)
        if not chosen.available:
            raise InvalidRequestError(chosen.reason or "Not available here.", quantization=request.quantization)
        name = request.name or f"{options.model_id.split('/')[-1]}-{request.quantization}"
        if export_gguf.safe_name(name) != name:
            raise InvalidRequestError(
                f"'{name}' is not a usable file name: use letters, digits, '.', '_' and '-' (up to 100).", name=name
            )
        self.root.mkdir(parents=True, exist_ok=True)
        needed = chosen.expected_bytes * (2 if request.quantization in export_gguf.K_QUANTS else 1)
        free = shutil.disk_usage(self.root).free
        if free < needed:
            raise InsufficientDiskError(
                f"The export needs about {needed / 1e9:.2f} GB and {free / 1e9:.2f} GB are free in {self.root}.",
                required_bytes=needed,
                free_bytes=free,
            )
        path, resolved, adapter_id, adapter_path = self._source(request.model_id, request.adapter_id)
        job_id = self.manager.new_id()
        spec = ExportSpec(
            job_id=job_id,
            model_id=resolved,
            model_path=str(path),
            adapter_id=adapter_id,
            adapter_path=adapter_path,
            quantization=request.quantization,
            name=name,
            staging_dir=str(self.root / f".tmp-{job_id}"),
        )
        what = f"{resolved} + adapter {adapter_id}" if adapter_id else resolved
        job: ExportJob = self.manager.new_record(
            self.name,
            job_id=job_id,
            title=f"Export {what} to GGUF ({request.quantization})",
            model_id=resolved,
            adapter_id=adapter_id,
            quantization=request.quantization,
            name=name,
            spec=spec,
        )
        return self.manager.submit(job)

    # ----------------------------------------------------------------- the job

    def run(self, run: JobRun[ExportJob]) -> dict[str, Any]:
        job = run.job
        run.update(status="preparing", progress=JobProgress(unit="tensors"))
        run_dir = self.settings.outputs_path / "runs" / f"export-{job.id}"
        staging = Path(job.spec.staging_dir)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)  # a resume starts over: the old events are not this run's
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_text(job.spec.model_dump_json(indent=2), encoding="utf-8")
        result: dict[str, Any] = {}

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "status":
                run.update(status=event["status"])
            elif event["event"] == "progress":
                total = int(event["total"])
                run.update(
                    progress=JobProgress(
                        completed=int(event["completed"]),
                        total=total,
                        unit="tensors",
                        percent=round(100 * int(event["completed"]) / total, 1) if total else None,
                    )
                )
            elif event["event"] == "done":
                result.update(event["result"])

        try:
            run_worker(run, "export", run_dir, on_event)
            target = self.root / job.id
            info = ExportInfo.model_validate(result)
            info = info.model_copy(update={"path": str(target / info.file_name)})
            (staging / META).write_text(info.model_dump_json(indent=2), encoding="utf-8")
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        return {"result": info}

    def forget(self, job: ExportJob) -> None:
        shutil.rmtree(self.settings.outputs_path / "runs" / f"export-{job.id}", ignore_errors=True)

    # ----------------------------------------------------------------- finished exports

    def list_all(self) -> list[ExportInfo]:
        found = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if not folder.name.startswith(".") and (folder / META).is_file():
                    try:
                        found.append(self._read(folder))
                    except (OSError, ValueError):
                        continue  # deleted while listed, or not ours
        return sorted(found, key=lambda e: e.created_at, reverse=True)

    def get(self, export_id: str) -> ExportInfo:
        folder = self.root / export_id
        if not EXPORT_ID.match(export_id) or not (folder / META).is_file():
            raise ExportNotFoundError(f"No export '{export_id}'. GET /exports lists them.", export_id=export_id)
        return self._read(folder)

    def file(self, export_id: str) -> Path:
        info = self.get(export_id)
        return self.root / export_id / info.file_name

    def delete(self, export_id: str) -> int:
        self.get(export_id)
        folder = self.root / export_id
        freed = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        shutil.rmtree(folder)
        return freed

    @staticmethod
    def _read(folder: Path) -> ExportInfo:
        data = json.loads((folder / META).read_text(encoding="utf-8"))
        return ExportInfo.model_validate(data)
