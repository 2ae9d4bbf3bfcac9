"""Downloads as jobs: phases, live progress, cancel, resume, a verdict before the first byte, and restarts.

A job runs in its own worker thread: resolving (model info, file plan, disk and memory verdict) → downloading
(huggingface_hub's ``snapshot_download``, progress from its own tqdm hooks) → verifying → loading (if asked) →
ready, or failed / cancelled. Jobs are kept in memory for watching and in SQLite (:class:`JobStore`) so a restart
lists the interrupted ones, which resume from the bytes already on disk. Tokens live only in the worker's memory.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import huggingface_hub.constants
from huggingface_hub.file_download import DryRunFileInfo
from tqdm.auto import tqdm

from backend.config import Settings
from backend.errors import (
    InsufficientDiskError,
    InsufficientMemoryError,
    InvalidModelError,
    InvalidRequestError,
    JobCancelled,
)
from backend.schemas.job_base import JobProgress
from backend.schemas.jobs import DownloadCheck, DownloadJob, DownloadRequest
from backend.services import llama_engine
from backend.services.hub import RemoteModel, check_repo_id
from backend.services.jobs import JobKind, JobRun
from backend.services.model_files import count_parameters_from_config, disk_bytes, inspect_folder
from backend.services.model_service import ModelService

logger = logging.getLogger(__name__)

# huggingface_hub reads response bodies in 10 MiB chunks and reports progress (and lets a cancel take effect)
# once per chunk; bytes of a chunk cut short are discarded on resume. 1 MiB makes all three ten times finer
# at no measurable cost in throughput.
DOWNLOAD_CHUNK_SIZE = 1024 * 1024
SPEED_WINDOW_S = 5.0


def disk_free(settings: Settings) -> int:
    """Bytes Orchard may still write: free space of the cache's disk, bounded by the disk quota if one is set."""
    settings.hf_cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.hf_cache_dir).free
    if settings.disk_quota_gb is not None:
        used = disk_bytes(settings.hf_cache_dir) + disk_bytes(settings.models_path)
        free = min(free, max(int(settings.disk_quota_gb * 1e9) - used, 0))
    return free


@dataclass
class _Counters:
    """A download's progress counters, fed by huggingface_hub's hooks."""

    cached_bytes: int = 0
    written: int = 0
    files_written: int = 0
    received: deque[tuple[float, int]] = field(default_factory=deque)
    last_byte_at: float = field(default_factory=time.monotonic)


def _progress_class(on_update: Callable[[str, int], None], cancel: threading.Event) -> type[tqdm[Any]]:
    """A tqdm class for ``snapshot_download`` that feeds a job instead of drawing, and stops it on cancel.

    snapshot_download makes three bars from it: bytes written (``Reconstructing…``), network bytes
    (``Downloading bytes``) and files done (``Fetching N files``).
    """

    class JobProgressBar(tqdm):  # type: ignore[type-arg]  # generic only in the stubs
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            desc = str(kwargs.get("desc") or "")
            self._kind = (
                "written" if desc.startswith("Reconstructing")
                else "received" if desc.startswith("Downloading")
                else "files" if desc.startswith("Fetching")
                else "other"
            )  # fmt: skip
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if cancel.is_set():
                raise JobCancelled()
            on_update(self._kind, int(n or 0))
            return None

    return JobProgressBar


class DownloadKind(JobKind[DownloadJob]):
    """Download jobs: start, the verdict, the work, and their live progress (speed, time left, stalled).

    Args:
        settings: Paths, Hub endpoint, quota and stall threshold.
        models: The model service (fit checks, loading).
    """

    name = "download"
    schema = DownloadJob
    phases = ("queued", "resolving", "downloading", "verifying", "loading")
    resumable = True

    def __init__(self, settings: Settings, models: ModelService) -> None:
        huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = DOWNLOAD_CHUNK_SIZE
        self.settings = settings
        self.models = models
        self.hub = models.hub

    # ----------------------------------------------------------------- public API

    def start(self, request: DownloadRequest) -> DownloadJob:
        """Start a download job, or return the running job for the same model and revision."""
        check_repo_id(request.model_id)
        running: DownloadJob | None = self.manager.find_active(
            self.name,
            lambda job: (
                (job.model_id, job.revision, job.gguf_file) == (request.model_id, request.revision, request.gguf_file)
            ),
        )
        if running is not None:
            return running
        job: DownloadJob = self.manager.new_record(
            self.name,
            title=f"Download {request.model_id}",
            model_id=request.model_id,
            revision=request.revision,
            load=request.load,
            dtype=request.dtype,
            device=request.device,
            force=request.force,
            include=request.include,
            exclude=request.exclude,
            gguf_file=request.gguf_file,
            engine=request.engine,
            trust_remote_code=request.trust_remote_code,
        )
        token = request.access_token.get_secret_value() if request.access_token else None
        return self.manager.submit(job, token)

    def is_downloading(self, model_id: str) -> bool:
        return self.manager.find_active(self.name, lambda job: job.model_id == model_id) is not None

    def check(
        self,
        model_id: str,
        *,
        revision: str | None = None,
        access_token: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        gguf_file: str | None = None,
    ) -> DownloadCheck:
        """The verdict before the first byte: bytes still to fetch vs free disk, memory needed vs available."""
        token = self.settings.token(access_token)
        remote = self.hub.inspect(model_id, revision=revision, token=token)
        return self._verdict(
            model_id, revision, remote, token, dtype, device, include, exclude, gguf_file, allow_code=False
        )[0]

    def purge(self, job: DownloadJob) -> int:
        """Delete the partial (``.incomplete``) files of the model's downloads; return the bytes freed."""
        blobs = self.hub.repo_folder(job.model_id) / "blobs"
        freed = 0
        for partial in blobs.glob("*.incomplete") if blobs.is_dir() else []:
            freed += partial.stat().st_size
            partial.unlink(missing_ok=True)
        return freed

    # ----------------------------------------------------------------- the job system's hooks

    def new_state(self, job: DownloadJob) -> _Counters:
        return _Counters()

    def view(self, run: JobRun[DownloadJob]) -> DownloadJob:
        """The job with its progress computed now (speed, ETA, stalled)."""
        counters: _Counters = run.state
        with run.lock:
            job = run.job
            completed = counters.cached_bytes + max(counters.written, 0)
            total = job.progress.total
            if total is not None:
                completed = min(completed, total)
            completed = max(completed, job.progress.completed)  # monotonic, whatever the hooks report
            now = time.monotonic()
            while counters.received and now - counters.received[0][0] > SPEED_WINDOW_S:
                counters.received.popleft()
            speed = None
            if job.status == "downloading" and counters.received:
                span = max(now - counters.received[0][0], 1.0)
                speed = sum(n for _, n in counters.received) / span
            eta = (total - completed) / speed if speed and total is not None else None
            stalled = job.status == "downloading" and now - counters.last_byte_at > self.settings.download_stall_seconds
            progress = JobProgress(
                completed=completed,
                total=total,
                unit="bytes",
                percent=round(100 * completed / total, 2) if total else (100.0 if total == 0 else None),
                files_done=counters.files_written,
                files_total=job.progress.files_total,
                bytes_per_second=round(speed, 1) if speed is not None else None,
                eta_seconds=round(eta, 1) if eta is not None else None,
                stalled=stalled,
            )
            run.job = job = job.model_copy(update={"progress": progress})
        return job

    def run(self, run: JobRun[DownloadJob]) -> dict[str, Any]:
        job = run.job
        counters: _Counters = run.state
        run.update(status="resolving")
        token = self.settings.token(run.secret)
        remote = self.hub.inspect(job.model_id, revision=job.revision, token=token)
        allow_code = self.models.check_remote_code(job.model_id, remote.config or {}, job.trust_remote_code)
        if remote.weight_format == "pytorch":
            self.models.check_pickle(job.model_id)
        check, plan = self._verdict(
            job.model_id,
            job.revision,
            remote,
            token,
            job.dtype,
            job.device,
            job.include,
            job.exclude,
            job.gguf_file,
            allow_code=allow_code,
        )
        if not plan:
            raise InvalidModelError(f"'{job.model_id}' has no files Orchard can use.", model_id=job.model_id)
        if not check.fits_disk and not job.force:
            raise InsufficientDiskError(
                f"'{job.model_id}' needs {check.bytes_to_fetch / 1e9:.2f} GB more on disk; "
                f"{check.disk_free_bytes / 1e9:.2f} GB free. Free disk space, raise ORCHARD_DISK_QUOTA_GB, "
                "or pass force=true.",
                bytes_to_fetch=check.bytes_to_fetch,
                disk_free_bytes=check.disk_free_bytes,
            )
        if job.load and not check.fits_memory and not job.force:
            raise InsufficientMemoryError(
                f"'{job.model_id}' {check.memory_reason}.",
                model_id=job.model_id,
                required_gb=check.memory_required_gb,
                available_gb=check.memory_available_gb,
                dtype=check.dtype,
                device=check.device,
            )
        with run.lock:  # complete cached files never reach the byte hook; the files hook counts every file
            counters.cached_bytes = check.bytes_cached
        progress = job.progress.model_copy(update={"total": check.bytes_total, "files_total": len(plan)})
        run.update(status="downloading", commit=check.commit, progress=progress)
        counters.last_byte_at = time.monotonic()
        bar = _progress_class(lambda kind, n: self._on_progress(run, kind, n), run.cancel)
        path = self.hub.fetch(
            job.model_id,
            plan,
            commit=check.commit,
            token=token,
            on_bytes=lambda n, resumed: self._on_fetched(run, n, resumed),
            cancelled=run.cancel.is_set,
            tqdm_class=bar,
        )
        run.check_cancelled()
        if check.gguf_file is not None:  # the snapshot may hold other quantizations fetched before: load this one
            path = path / check.gguf_file
        run.update(status="verifying", path=str(path))
        files_found = inspect_folder(path)
        if not files_found.complete:
            raise InvalidModelError(
                f"'{job.model_id}' downloaded but is not a complete model: {'; '.join(files_found.problems)}.",
                model_id=job.model_id,
                problems=files_found.problems,
            )
        with run.lock:  # every byte is on disk now, whatever the hooks reported
            counters.cached_bytes, counters.written, counters.files_written = check.bytes_total, 0, len(plan)
        if not job.load:
            return {"result": None}
        run.update(status="loading")
        loaded = self.models.load_folder(
            path,
            model_id=job.model_id,
            source="hub",
            revision=check.commit,
            dtype=check.dtype,
            device=check.device,
            force=job.force,
            trust_remote_code=allow_code,
            engine=job.engine,
            cancelled=run.cancel.is_set,
        )
        return {"result": loaded.metadata}

    # ----------------------------------------------------------------- internals

    def _on_progress(self, run: JobRun[DownloadJob], kind: str, n: int) -> None:
        counters: _Counters = run.state
        with run.lock:
            if kind == "written":
                counters.written += n
            elif kind == "files":
                counters.files_written += n
            elif kind == "received" and n > 0:
                now = time.monotonic()
                counters.received.append((now, n))
                counters.last_byte_at = now
        run.changed()

    def _on_fetched(self, run: JobRun[DownloadJob], n: int, resumed: bool) -> None:
        self._on_progress(run, "written", n)
        if not resumed:
            self._on_progress(run, "received", n)

    def _verdict(
        self,
        model_id: str,
        revision: str | None,
        remote: RemoteModel,
        token: str | None,
        dtype: str | None,
        device: str | None,
        include: list[str] | None,
        exclude: list[str] | None,
        gguf_file: str | None,
        *,
        allow_code: bool,
    ) -> tuple[DownloadCheck, list[DryRunFileInfo]]:
        device, dtype = self.models.placement(device, dtype)
        if remote.weight_format == "gguf":
            gguf_file = choose_gguf(model_id, remote, gguf_file)
            patterns = [gguf_file]  # one quantization: the file carries its tokenizer and template
        else:
            gguf_file = None
            patterns = self.hub.file_patterns(
                allow_pickle=remote.weight_format == "pytorch", allow_remote_code=allow_code
            )
        commit = remote.info.sha or revision or "main"
        plan = self.hub.plan(model_id, commit=commit, token=token, patterns=patterns, include=include, exclude=exclude)
        total = sum(f.file_size or 0 for f in plan)
        cached = sum(f.file_size or 0 for f in plan if not f.will_download)
        to_fetch = total - cached
        free = disk_free(self.settings)
        num_params = sum(remote.parameters_by_dtype.values()) or (
            count_parameters_from_config(remote.config) if remote.config else None
        )
        if gguf_file is not None:
            available = self.models.optimizer.memory_available_gb(device)
            memory = llama_engine.file_fit_verdict(total, device, available)
        else:
            memory = self.models.fit_verdict(num_params, dtype, device)
        fits_disk = to_fetch <= free
        disk_reason = f"{to_fetch / 1e9:.2f} GB to fetch, {free / 1e9:.2f} GB free on disk" + (
            "" if fits_disk else ": free disk space or raise ORCHARD_DISK_QUOTA_GB"
        )
        check = DownloadCheck(
            model_id=model_id,
            revision=revision,
            commit=commit,
            gguf_file=gguf_file,
            files_total=len(plan),
            bytes_total=total,
            bytes_cached=cached,
            bytes_to_fetch=to_fetch,
            disk_free_bytes=free,
            fits_disk=fits_disk,
            num_parameters=num_params,
            dtype=dtype,
            device=device,
            memory_required_gb=memory.required_gb,
            memory_available_gb=memory.available_gb,
            fits_memory=memory.fits,
            fits=fits_disk and memory.fits,
            disk_reason=disk_reason,
            memory_reason=memory.reason,
            reason=f"disk: {disk_reason}; memory: {memory.reason}",
        )
        return check, plan


SPLIT_GGUF = re.compile(r"-\d{5}-of-\d{5}\.gguf$")


def choose_gguf(model_id: str, remote: RemoteModel, requested: str | None) -> str:
    """The GGUF file to fetch from a repo of them: the one asked for, or the only one.

    Raises:
        InvalidRequestError: several files and none chosen, a file the repo does not have, or a split file; each
            with ``candidates`` (every ``.gguf`` file and its size).
    """
    files = [(name, size) for name, size in remote.files if name.endswith(".gguf")]
    candidates = [{"file": name, "size": size} for name, size in files]
    if requested is None:
        if len(files) == 1:
            requested = files[0][0]
        else:
            raise InvalidRequestError(
                f"'{model_id}' holds {len(files)} GGUF files, one per quantization: choose one with gguf_file "
                "(smaller files are more quantized; q4_k_m and q8_0 are the usual picks).",
                model_id=model_id,
                candidates=candidates,
            )
    if requested not in {name for name, _ in files}:
        raise InvalidRequestError(
            f"'{model_id}' has no GGUF file '{requested}'; choose one of its candidates.",
            model_id=model_id,
            candidates=candidates,
        )
    if SPLIT_GGUF.search(requested):
        raise InvalidRequestError(
            f"'{requested}' is one part of a split GGUF model, which Orchard does not download yet; choose a "
            "single-file quantization.",
            model_id=model_id,
            candidates=[c for c in candidates if not SPLIT_GGUF.search(str(c["file"]))],
        )
    return requested
