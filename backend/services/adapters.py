"""Trained LoRA adapters: list and delete them, put one on the loaded model for chat, merge one into a new model.

An adapter is a folder ``OUTPUTS_DIR/adapters/<id>`` (the train job's id) holding peft's files and
``orchard_adapter.json``: its base model, dataset, losses, and the chat template and end-of-turn token it was
trained with, so putting it on a model whose template differs is caught before it answers badly.

Attaching injects the adapter's layers into the loaded model in place (peft), so chat, the batched decoder and
``/v1`` answer through it unchanged; detaching takes them out again, leaving the base weights as they were.
A merge (``merge`` job) runs in the training process runner: base + adapter folded into plain weights, written to
a hidden staging folder in the models directory and renamed into place, listed and loadable like any model.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.errors import (
    AdapterNotFoundError,
    ChatTemplateMismatchError,
    InvalidModelError,
    InvalidRequestError,
    ModelBusyError,
    ModelNotFoundError,
    ModelNotLoadedError,
)
from backend.schemas.model import AttachedAdapter, ModelMetadata
from backend.schemas.training import AdapterInfo, MergeJob, MergeRequest, MergeSpec
from backend.services.jobs import JobKind, JobRun
from backend.services.model_service import LoadedModel, ModelService, release_memory
from backend.services.train_worker import ADAPTER_META
from backend.services.training import run_worker
from backend.utils.libraries import import_libraries

logger = logging.getLogger(__name__)

ADAPTER_ID = re.compile(r"^[0-9a-f]{12}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class AdapterService:
    """The adapters on disk, and the one on the loaded model."""

    def __init__(self, settings: Settings, models: ModelService) -> None:
        self.settings = settings
        self.models = models
        self.root = settings.outputs_path / "adapters"

    def list_all(self) -> list[AdapterInfo]:
        """Every complete adapter, newest first."""
        found = []
        for meta in self.root.glob(f"*/{ADAPTER_META}") if self.root.is_dir() else []:
            try:
                found.append(self._read(meta.parent))
            except (OSError, ValueError):
                logger.warning("Skipping unreadable adapter metadata %s", meta)
        return sorted(found, key=lambda a: a.created_at, reverse=True)

    def get(self, adapter_id: str) -> AdapterInfo:
        folder = self.root / adapter_id
        if not ADAPTER_ID.match(adapter_id) or not (folder / ADAPTER_META).is_file():
            raise AdapterNotFoundError(f"No adapter '{adapter_id}'. GET /adapters lists them.", adapter_id=adapter_id)
        return self._read(folder)

    def _read(self, folder: Path) -> AdapterInfo:
        data = json.loads((folder / ADAPTER_META).read_text(encoding="utf-8"))
        data["path"] = str(folder)
        return AdapterInfo.model_validate(data)

    def delete(self, adapter_id: str) -> int:
        """Delete an adapter (not while it is on the loaded model); returns the bytes freed."""
        info = self.get(adapter_id)
        loaded = self.models.cache.current
        if loaded is not None and loaded.metadata.adapter is not None and loaded.metadata.adapter.id == adapter_id:
            raise ModelBusyError(
                f"Adapter '{info.name}' is on the loaded model; take it off first (DELETE /model/adapter).",
                adapter_id=adapter_id,
            )
        folder = Path(info.path)
        freed = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        doomed = self.root / f".deleting-{adapter_id}"
        folder.rename(doomed)  # gone from the list at once
        shutil.rmtree(doomed, ignore_errors=True)
        return freed

    # ----------------------------------------------------------------- on the loaded model

    def attach(self, adapter_id: str, *, force: bool = False) -> ModelMetadata:
        """Put an adapter on the loaded model (replacing one that is on it).

        Raises:
            AdapterNotFoundError; ModelNotLoadedError (no model, or not the adapter's base: 409 with why);
            ModelBusyError (generations are running, or a load); ChatTemplateMismatchError (the chat template
            differs from the one trained with, unless ``force``); InvalidModelError (the adapter's files are
            unreadable: the model stays loaded without an adapter).
        """
        info = self.get(adapter_id)
        loaded = self._loaded()
        self._check_base(loaded, info)
        template = getattr(loaded.tokenizer, "chat_template", None) or None
        if template != info.chat_template and not force:
            raise ChatTemplateMismatchError(
                f"Adapter '{info.name}' was trained with a different chat template than '{loaded.metadata.model_id}' "
                "has now: its answers would not match its training. Pass force=true to attach it anyway.",
                adapter_id=adapter_id,
            )
        import_libraries("training")
        from peft import PeftModel

        with self.models.cache.loading_slot(loaded.metadata.model_id, "attaching an adapter", exclusive=True):
            if self.models.cache.current is not loaded:
                raise ModelBusyError("The loaded model changed meanwhile; retry.", adapter_id=adapter_id)
            base = self._without_adapter(loaded)
            try:
                peft = PeftModel.from_pretrained(base.model, info.path, is_trainable=False)
            except Exception as exc:  # unreadable files: the model stays loaded, with no adapter on it
                self.models.cache.swap(base)
                logger.warning("Adapter %s could not be attached", adapter_id, exc_info=True)
                raise InvalidModelError(
                    f"Adapter '{info.name}' could not be read ({type(exc).__name__}); its files may be damaged. "
                    "Train it again, or delete it.",
                    adapter_id=adapter_id,
                ) from exc
            peft.eval()
            metadata = base.metadata.model_copy(update={"adapter": AttachedAdapter(id=info.id, name=info.name)})
            self.models.cache.swap(
                LoadedModel(model=base.model, tokenizer=base.tokenizer, metadata=metadata, peft=peft)
            )
        logger.info("Adapter %s (%s) is on %s", info.id, info.name, metadata.model_id)
        return metadata

    def detach(self) -> ModelMetadata:
        """Take the adapter off the loaded model; the base weights are as they were before it."""
        loaded = self._loaded()
        if loaded.peft is None:
            return loaded.metadata
        with self.models.cache.loading_slot(loaded.metadata.model_id, "removing its adapter", exclusive=True):
            base = self._without_adapter(loaded)
            self.models.cache.swap(base)
        release_memory()
        return base.metadata

    def _loaded(self) -> LoadedModel:
        loaded = self.models.cache.current
        if loaded is None:
            raise ModelNotLoadedError("No model is loaded; load the adapter's base model first (POST /model/load).")
        return loaded

    @staticmethod
    def _without_adapter(loaded: LoadedModel) -> LoadedModel:
        if loaded.peft is None:
            return loaded
        model = loaded.peft.unload()  # peft's layers out, the original modules back in place
        return LoadedModel(
            model=model, tokenizer=loaded.tokenizer, metadata=loaded.metadata.model_copy(update={"adapter": None})
        )

    @staticmethod
    def _check_base(loaded: LoadedModel, info: AdapterInfo) -> None:
        if loaded.engine != "transformers":
            raise ModelNotLoadedError(
                f"'{loaded.metadata.model_id}' runs on {loaded.engine}; adapters go on models loaded on transformers.",
                adapter_id=info.id,
                engine=loaded.engine,
            )
        same_folder = Path(loaded.metadata.path).resolve() == Path(info.base_model_path).resolve()
        if not same_folder and loaded.metadata.model_id != info.base_model_id:
            raise ModelNotLoadedError(
                f"Adapter '{info.name}' was trained on '{info.base_model_id}', but '{loaded.metadata.model_id}' is "
                f"loaded; load '{info.base_model_id}' first.",
                adapter_id=info.id,
                base_model_id=info.base_model_id,
                loaded=loaded.metadata.model_id,
            )


class MergeKind(JobKind[MergeJob]):
    """Merges: base + adapter folded into a new local model, in the training process runner."""

    name = "merge"
    schema = MergeJob
    phases = ("queued", "preparing", "merging", "saving")
    resumable = True  # a rerun starts the merge again

    def __init__(self, settings: Settings, models: ModelService, adapters: AdapterService) -> None:
        self.settings = settings
        self.models = models
        self.adapters = adapters

    def start(self, adapter_id: str, request: MergeRequest) -> MergeJob:
        """Start merging ``adapter_id`` into a new model named ``request.name``: 202 with the job.

        Raises:
            AdapterNotFoundError; ModelNotFoundError (the base is gone); InvalidRequestError (a bad name);
            ModelBusyError (a model of that name exists, or is being written).
        """
        info = self.adapters.get(adapter_id)
        if not MODEL_NAME.match(request.name):
            raise InvalidRequestError(
                f"'{request.name}' is not a usable model name: use letters, digits, '.', '_' and '-' (up to 100)."
            )
        if not Path(info.base_model_path).is_dir():
            raise ModelNotFoundError(
                f"The base model '{info.base_model_id}' is no longer at {info.base_model_path}.",
                model_id=info.base_model_id,
            )
        self._refuse_taken(request.name)
        job_id = self.manager.new_id()
        spec = MergeSpec(
            job_id=job_id,
            adapter_path=info.path,
            base_model_path=info.base_model_path,
            output_dir=str(self.settings.models_path / f".tmp-merge-{job_id}"),
        )
        job: MergeJob = self.manager.new_record(
            self.name,
            job_id=job_id,
            title=f"Merge {info.name} into {request.name}",
            adapter_id=adapter_id,
            name=request.name,
            spec=spec,
        )
        return self.manager.submit(job)

    def _refuse_taken(self, name: str, job_id: str | None = None) -> None:
        if (self.settings.models_path / name).exists():
            raise ModelBusyError(f"A model named '{name}' exists already; pick another name.", name=name)
        other = self.manager.find_active(self.name, lambda j: j.name == name and j.id != job_id)
        if other is not None:
            raise ModelBusyError(f"Job {other.id} is writing a model named '{name}'.", name=name, job_id=other.id)

    def restart(self, job: MergeJob) -> MergeJob:
        self._refuse_taken(job.name, job.id)
        return job

    def run(self, run: JobRun[MergeJob]) -> dict[str, Any]:
        job = run.job
        run.update(status="preparing")
        run_dir = self.settings.outputs_path / "runs" / f"merge-{job.id}"
        staging = Path(job.spec.output_dir)
        shutil.rmtree(staging, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.json").write_text(job.spec.model_dump_json(indent=2), encoding="utf-8")

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "status":
                run.update(status=event["status"])

        try:
            run_worker(run, "merge", run_dir, on_event)
            target = self.settings.models_path / job.name
            if target.exists():
                raise ModelBusyError(f"A model named '{job.name}' appeared meanwhile; merge again with another name.")
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        return {"result": job.name}
