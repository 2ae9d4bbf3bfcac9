"""Downloads as jobs: phases, live progress, cancel, resume, a verdict before the first byte, and restarts.

A job runs in its own worker thread: resolving (model info, file plan, disk and memory verdict) → downloading
(huggingface_hub's ``snapshot_download``, progress from its own tqdm hooks) → verifying → loading (if asked) →
ready, or failed / cancelled. Jobs are kept in memory for watching and in SQLite (:class:`JobStore`) so a restart
lists the interrupted ones, which resume from the bytes already on disk. Tokens live only in the worker's memory.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    ModelBusyError,
    ModelNotFoundError,
    StudioError,
)
from backend.schemas.jobs import ACTIVE_STATUSES, DownloadCheck, DownloadRequest, Job, JobError, JobProgress
from backend.services.hub import DownloadCancelled, RemoteModel, check_repo_id
from backend.services.job_store import JobStore
from backend.services.model_files import count_parameters_from_config, disk_bytes, inspect_folder
from backend.services.model_service import ModelService

logger = logging.getLogger(__name__)

# huggingface_hub reads response bodies in 10 MiB chunks and reports progress (and lets a cancel take effect)
# once per chunk; bytes of a chunk cut short are discarded on resume. 1 MiB makes all three ten times finer
# at no measurable cost in throughput.
DOWNLOAD_CHUNK_SIZE = 1024 * 1024
SPEED_WINDOW_S = 5.0
PERSIST_EVERY_S = 1.0


def disk_free(settings: Settings) -> int:
    """Bytes Orchard may still write: free space of the cache's disk, bounded by the disk quota if one is set."""
    settings.hf_cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.hf_cache_dir).free
    if settings.disk_quota_gb is not None:
        used = disk_bytes(settings.hf_cache_dir) + disk_bytes(settings.models_path)
        free = min(free, max(int(settings.disk_quota_gb * 1e9) - used, 0))
    return free


@dataclass
class _Run:
    """A job's live state: its latest record, its cancel switch and its progress counters."""

    job: Job
    token: str | None
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_as: str = "cancelled"  # or "interrupted" when the server shuts down
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cached_bytes: int = 0
    written: int = 0
    files_written: int = 0
    received: deque[tuple[float, int]] = field(default_factory=deque)
    last_byte_at: float = field(default_factory=time.monotonic)
    persisted_at: float = 0.0


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
                raise DownloadCancelled()
            on_update(self._kind, int(n or 0))
            return None

    return JobProgressBar


class DownloadManager:
    """Starts, watches, cancels and resumes download jobs.

    Args:
        settings: Paths, Hub endpoint, quota and stall threshold.
        models: The model service (fit checks, loading).
        store: Where jobs are recorded; default ``DATA_DIR/orchard.db``.
    """

    def __init__(self, settings: Settings, models: ModelService, store: JobStore | None = None) -> None:
        huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = DOWNLOAD_CHUNK_SIZE
        self.settings = settings
        self.models = models
        self.hub = models.hub
        self.store = store or JobStore(settings.data_path / "orchard.db")
        self._lock = threading.Lock()
        self.store.mark_interrupted()
        self._jobs: dict[str, Job] = {job.id: job for job in self.store.load_all()}
        self._runs: dict[str, _Run] = {}

    # ----------------------------------------------------------------- public API

    def start(self, request: DownloadRequest) -> Job:
        """Start a download job, or return the running job for the same model and revision."""
        check_repo_id(request.model_id)
        with self._lock:
            running = next(
                (
                    run
                    for run in self._runs.values()
                    if (run.job.model_id, run.job.revision) == (request.model_id, request.revision)
                    and not run.done.is_set()
                ),
                None,
            )
            if running is None:
                now = datetime.now(UTC)
                job = Job(
                    id=uuid.uuid4().hex[:12],
                    model_id=request.model_id,
                    revision=request.revision,
                    status="queued",
                    load=request.load,
                    dtype=request.dtype,
                    device=request.device,
                    force=request.force,
                    include=request.include,
                    exclude=request.exclude,
                    trust_remote_code=request.trust_remote_code,
                    created_at=now,
                    updated_at=now,
                )
                token = request.access_token.get_secret_value() if request.access_token else None
                return self._launch(job, token)
        return self._view(running)

    def resume(self, job_id: str, access_token: str | None = None) -> Job:
        """Run an interrupted, failed or cancelled job again; bytes already on disk are not fetched again."""
        with self._lock:
            job = self._get(job_id)
            run = self._runs.get(job_id)
            if run is None or run.done.is_set():
                if job.status == "ready":
                    raise InvalidRequestError(f"Job {job_id} is already done.", job_id=job_id)
                job = job.model_copy(
                    update={"status": "queued", "error": None, "finished_at": None, "updated_at": datetime.now(UTC)}
                )
                return self._launch(job, access_token)
        return self._view(run)

    def cancel(self, job_id: str, *, purge: bool = False, timeout: float = 10.0) -> tuple[Job, int]:
        """Stop a job (its partial files stay for a resume, unless ``purge``); return it and the bytes purged."""
        with self._lock:
            job = self._get(job_id)
            run = self._runs.get(job_id)
        if run is not None and not run.done.is_set():
            run.cancel.set()
            run.done.wait(timeout)
        purged = self.purge_partial(job.model_id) if purge else 0
        return self.get(job_id), purged

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._get(job_id)
            run = self._runs.get(job_id)
        return self._view(run) if run is not None else job

    def all(self) -> list[Job]:
        with self._lock:
            ids = list(self._jobs)
        return sorted((self.get(i) for i in ids), key=lambda j: j.created_at, reverse=True)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.done.wait(timeout)
        return self.get(job_id)

    def is_downloading(self, model_id: str) -> bool:
        with self._lock:
            return any(r.job.model_id == model_id and r.job.status in ACTIVE_STATUSES for r in self._runs.values())

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
    ) -> DownloadCheck:
        """The verdict before the first byte: bytes still to fetch vs free disk, memory needed vs available."""
        token = self.settings.token(access_token)
        remote = self.hub.inspect(model_id, revision=revision, token=token)
        return self._verdict(model_id, revision, remote, token, dtype, device, include, exclude, allow_code=False)[0]

    def purge_partial(self, model_id: str) -> int:
        """Delete the partial (``.incomplete``) files of a model's downloads; return the bytes freed."""
        blobs = self.hub.repo_folder(model_id) / "blobs"
        freed = 0
        for partial in blobs.glob("*.incomplete") if blobs.is_dir() else []:
            freed += partial.stat().st_size
            partial.unlink(missing_ok=True)
        return freed

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop running jobs as *interrupted* (resumable after the restart)."""
        with self._lock:
            runs = [r for r in self._runs.values() if not r.done.is_set()]
        for run in runs:
            run.cancel_as = "interrupted"
            run.cancel.set()
        for run in runs:
            run.done.wait(timeout)

    # ----------------------------------------------------------------- internals

    def _get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise ModelNotFoundError(f"No job '{job_id}'.", job_id=job_id) from None

    def _launch(self, job: Job, token: str | None) -> Job:
        run = _Run(job=job, token=token)
        self._runs[job.id] = run
        self._jobs[job.id] = job
        self.store.save(job)
        threading.Thread(target=self._work, args=(run,), name=f"download-{job.id}", daemon=True).start()
        return job

    def _view(self, run: _Run) -> Job:
        """The job with its progress computed now (speed, ETA, stalled)."""
        with run.lock:
            job = run.job
            completed = run.cached_bytes + max(run.written, 0)
            total = job.progress.total
            if total is not None:
                completed = min(completed, total)
            completed = max(completed, job.progress.completed)  # monotonic, whatever the hooks report
            now = time.monotonic()
            while run.received and now - run.received[0][0] > SPEED_WINDOW_S:
                run.received.popleft()
            speed = None
            if job.status == "downloading" and run.received:
                span = max(now - run.received[0][0], 1.0)
                speed = sum(n for _, n in run.received) / span
            eta = (total - completed) / speed if speed and total is not None else None
            stalled = job.status == "downloading" and now - run.last_byte_at > self.settings.download_stall_seconds
            progress = JobProgress(
                completed=completed,
                total=total,
                percent=round(100 * completed / total, 2) if total else (100.0 if total == 0 else None),
                files_done=run.files_written,
                files_total=job.progress.files_total,
                bytes_per_second=round(speed, 1) if speed is not None else None,
                eta_seconds=round(eta, 1) if eta is not None else None,
                stalled=stalled,
            )
            run.job = job = job.model_copy(update={"progress": progress})
        return job

    def _set(self, run: _Run, **changes: Any) -> None:
        with run.lock:
            run.job = run.job.model_copy(update={**changes, "updated_at": datetime.now(UTC)})
        job = self._view(run)
        with self._lock:
            self._jobs[job.id] = job
        if "status" in changes or time.monotonic() - run.persisted_at > PERSIST_EVERY_S:
            run.persisted_at = time.monotonic()
            self.store.save(job)

    def _on_progress(self, run: _Run, kind: str, n: int) -> None:
        with run.lock:
            if kind == "written":
                run.written += n
            elif kind == "files":
                run.files_written += n
            elif kind == "received" and n > 0:
                now = time.monotonic()
                run.received.append((now, n))
                run.last_byte_at = now
        if time.monotonic() - run.persisted_at > PERSIST_EVERY_S:
            run.persisted_at = time.monotonic()
            self.store.save(self._view(run))

    def _on_fetched(self, run: _Run, n: int, resumed: bool) -> None:
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
        *,
        allow_code: bool,
    ) -> tuple[DownloadCheck, list[DryRunFileInfo]]:
        device, dtype = self.models.placement(device, dtype)
        patterns = self.hub.file_patterns(allow_pickle=remote.weight_format == "pytorch", allow_remote_code=allow_code)
        commit = remote.info.sha or revision or "main"
        plan = self.hub.plan(model_id, commit=commit, token=token, patterns=patterns, include=include, exclude=exclude)
        total = sum(f.file_size or 0 for f in plan)
        cached = sum(f.file_size or 0 for f in plan if not f.will_download)
        to_fetch = total - cached
        free = disk_free(self.settings)
        num_params = sum(remote.parameters_by_dtype.values()) or (
            count_parameters_from_config(remote.config) if remote.config else None
        )
        memory = self.models.fit_verdict(num_params, dtype, device)
        fits_disk = to_fetch <= free
        disk_reason = f"{to_fetch / 1e9:.2f} GB to fetch, {free / 1e9:.2f} GB free on disk" + (
            "" if fits_disk else ": free disk space or raise ORCHARD_DISK_QUOTA_GB"
        )
        check = DownloadCheck(
            model_id=model_id,
            revision=revision,
            commit=commit,
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

    def _work(self, run: _Run) -> None:
        job = run.job
        try:
            self._set(run, status="resolving")
            token = self.settings.token(run.token)
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
                run.cached_bytes = check.bytes_cached
            progress = job.progress.model_copy(update={"total": check.bytes_total, "files_total": len(plan)})
            self._set(run, status="downloading", commit=check.commit, progress=progress)
            run.last_byte_at = time.monotonic()
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
            if run.cancel.is_set():
                raise DownloadCancelled()
            self._set(run, status="verifying", path=str(path))
            files_found = inspect_folder(path)
            if not files_found.complete:
                raise InvalidModelError(
                    f"'{job.model_id}' downloaded but is not a complete model: {'; '.join(files_found.problems)}.",
                    model_id=job.model_id,
                    problems=files_found.problems,
                )
            with run.lock:  # every byte is on disk now, whatever the hooks reported
                run.cached_bytes, run.written, run.files_written = check.bytes_total, 0, len(plan)
            result = None
            if job.load:
                self._set(run, status="loading")
                result = self.models.load_folder(
                    path,
                    model_id=job.model_id,
                    source="hub",
                    revision=check.commit,
                    dtype=check.dtype,
                    device=check.device,
                    force=job.force,
                    trust_remote_code=allow_code,
                ).metadata
            self._set(run, status="ready", result=result, finished_at=datetime.now(UTC))
        except DownloadCancelled:
            error = None
            if run.cancel_as == "interrupted":
                error = JobError(code="interrupted", message="The server stopped during this job; resume it.")
            self._set(run, status=run.cancel_as, error=error, finished_at=datetime.now(UTC))
        except StudioError as exc:
            self._fail(run, exc)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._fail(run, InsufficientDiskError("The disk filled up during the download; free space and resume."))
            else:
                logger.exception("download %s failed", job.id)
                self._fail(run, StudioError("The download failed with an I/O error; the server log has details."))
        except Exception:
            logger.exception("download %s failed", job.id)
            self._fail(run, StudioError("The download failed unexpectedly; the server log has details."))
        finally:
            run.token = None
            run.done.set()

    def _fail(self, run: _Run, exc: StudioError) -> None:
        error = JobError(code=exc.code, message=exc.message, details={"status_code": exc.status_code, **exc.details})
        self._set(run, status="failed", error=error, finished_at=datetime.now(UTC))


def raise_for_job(job: Job) -> None:
    """Turn a failed job back into its error (for ``wait=true`` callers, who expect the seed's status codes)."""
    if job.status != "failed" or job.error is None:
        if job.status in ("cancelled", "interrupted"):
            raise ModelBusyError(f"Job {job.id} was {job.status}; resume it to continue.", job_id=job.id)
        return
    details = dict(job.error.details)
    status = int(details.pop("status_code", 500))
    error = StudioError(job.error.message, job_id=job.id, **details)
    error.status_code, error.code = status, job.error.code
    raise error
