"""The one job system: every long action (download, load, and later train, merge, export, ingest) is a job.

A job runs in a worker thread (a kind whose work can crash the process runs a child process from there). The
:class:`JobManager` keeps every job in memory for watching and in SQLite (:class:`JobStore`) so a restart lists the
ones that were running as ``interrupted``; it cancels, resumes, prunes old finished jobs and clears them.

A kind is a small :class:`JobKind` subclass: its name, its schema, its phases, and ``run()``, the work, which
reports through the :class:`JobRun` it is given::

    class LoadKind(JobKind[LoadJob]):
        name, schema, phases, resumable = "load", LoadJob, ("queued", "preparing", "loading"), True

        def run(self, run: JobRun[LoadJob]) -> dict[str, Any]:
            run.update(status="preparing")
            ...
            run.check_cancelled()           # raises JobCancelled: the job ends "cancelled"
            return {"result": metadata}     # the job ends "ready" with these fields

Errors raised by ``run()`` end the job ``failed`` with the error in the one shape (:class:`JobError`).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from backend.config import Settings
from backend.errors import (
    InsufficientDiskError,
    InvalidRequestError,
    JobCancelled,
    JobNotFoundError,
    ModelBusyError,
    StudioError,
)
from backend.schemas.job_base import ACTIVE_STATUSES, FINISHED_STATUSES, JobBase, JobError
from backend.schemas.jobs import AnyJob
from backend.services.job_store import JobStore

logger = logging.getLogger(__name__)

J = TypeVar("J", bound=AnyJob)

PERSIST_EVERY_S = 1.0
RESUMABLE_STATUSES = frozenset({"failed", "cancelled", "interrupted"})


@dataclass
class JobRun(Generic[J]):
    """A running job's live state, handed to its kind's ``run()``: the latest record, the cancel switch, a secret
    (a token, kept in memory only) and ``state``, the kind's own counters."""

    job: J
    kind: JobKind[J]
    secret: str | None = None
    state: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_as: str = "cancelled"  # or "interrupted" when the server shuts down
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    persisted_at: float = 0.0
    started: bool = False  # its worker picked it up (a serial kind's job may wait queued behind another)
    _on_change: Callable[[JobRun[J], bool], None] | None = field(default=None, repr=False)

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def check_cancelled(self) -> None:
        """Stop the work here if the job was cancelled (or the server is stopping)."""
        if self.cancel.is_set():
            raise JobCancelled()

    def update(self, **changes: Any) -> None:
        """Change the job's fields (``status`` for a new phase, ``progress``...); saved at once on a new phase."""
        with self.lock:
            self.job = cast(J, self.job.model_copy(update={**changes, "updated_at": datetime.now(UTC)}))
        if self._on_change is not None:
            self._on_change(self, "status" in changes)

    def changed(self) -> None:
        """The kind's counters moved: save the job now and then (at most once a second)."""
        if self._on_change is not None:
            self._on_change(self, False)


class JobKind(Generic[J]):
    """One kind of job. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    schema: ClassVar[type[JobBase]]
    phases: ClassVar[tuple[str, ...]]
    resumable: ClassVar[bool] = False
    # Run this kind's jobs one after another on one long-lived thread: torch sets up its CPU thread pool once per
    # calling thread (tens of milliseconds), which a load on a fresh thread would pay every time.
    serial: ClassVar[bool] = False
    manager: JobManager

    def run(self, run: JobRun[J]) -> dict[str, Any]:
        """Do the work; return the fields the finished (``ready``) job gets. Raise to fail."""
        raise NotImplementedError

    def view(self, run: JobRun[J]) -> J:
        """The job as it is now; kinds with live counters (speed, time left) compute them here."""
        return run.job

    def new_state(self, job: J) -> Any:
        """The kind's counters for a fresh run of ``job``."""
        return None

    def restart(self, job: J) -> J:
        """The record a resumed job starts from (default: the same request, queued again)."""
        return job

    def purge(self, job: J) -> int:
        """What ``cancel(purge=True)`` removes besides stopping the job (partial files); return bytes freed."""
        return 0

    def forget(self, job: J) -> None:
        """The job leaves the history (cleared or pruned): remove what only a resume of it could use."""


class JobManager:
    """Starts, watches, cancels, resumes, prunes and clears the jobs of every kind.

    Args:
        settings: Where the store lives (``DATA_DIR/orchard.db``) and how many finished jobs to keep.
        store: The job store; default one in the data directory.
    """

    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        self.settings = settings
        self.history_limit = settings.job_history_limit
        self.store = store or JobStore(settings.data_path / "orchard.db")
        self._kinds: dict[str, JobKind[Any]] = {}
        self._lock = threading.Lock()
        self.store.mark_interrupted()
        self._jobs: dict[str, AnyJob] = {job.id: job for job in self.store.load_all()}
        self._runs: dict[str, JobRun[Any]] = {}
        self._workers: dict[str, ThreadPoolExecutor] = {}
        self.prune()

    def register(self, kind: JobKind[Any]) -> None:
        kind.manager = self
        self._kinds[kind.name] = kind

    # ----------------------------------------------------------------- starting

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def new_record(self, kind: str, *, job_id: str | None = None, **fields: Any) -> Any:
        """A fresh ``queued`` record of ``kind`` (with ``job_id``, or a new id), ready for :meth:`submit`."""
        now = datetime.now(UTC)
        schema = self._kind(kind).schema
        return schema(
            id=job_id or self.new_id(),
            kind=kind,
            status="queued",
            phases=list(self._kind(kind).phases),
            created_at=now,
            updated_at=now,
            **fields,
        )

    def submit(self, job: J, secret: str | None = None) -> J:
        """Start running ``job`` (from :meth:`new_record`) in a worker thread and return it."""
        with self._lock:
            return self._launch(job, secret)

    def find_active(self, kind: str, match: Callable[[Any], bool]) -> Any | None:
        """A running job of ``kind`` for which ``match(job)`` is true (to join instead of starting another)."""
        with self._lock:
            for run in self._runs.values():
                if run.job.kind == kind and not run.done.is_set() and match(run.job):
                    return self._public(run.kind.view(run))
        return None

    # ----------------------------------------------------------------- watching

    def get(self, job_id: str, kind: str | None = None) -> AnyJob:
        """The job as it is now. Raises :class:`JobNotFoundError` (also when it is of another ``kind``)."""
        with self._lock:
            job = self._jobs.get(job_id)
            run = self._runs.get(job_id)
        if job is None or (kind is not None and job.kind != kind):
            raise JobNotFoundError(f"No job '{job_id}'.", job_id=job_id)
        return self._public(run.kind.view(run) if run is not None else job)

    def list(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        about: dict[str, str | None] | None = None,
        limit: int | None = None,
    ) -> list[AnyJob]:
        """Jobs, newest first. ``status`` is a job status, or ``active`` / ``finished``; ``about`` keeps the jobs
        whose fields have these values (``{"collection_id": ...}``), a None value matching any."""
        wanted = {name: value for name, value in (about or {}).items() if value is not None}
        with self._lock:
            ids = [i for i, j in self._jobs.items() if kind is None or j.kind == kind]
        jobs = sorted((self.get(i) for i in ids), key=lambda j: j.created_at, reverse=True)
        jobs = [j for j in jobs if all(getattr(j, name, None) == value for name, value in wanted.items())]
        if status == "active":
            jobs = [j for j in jobs if j.status in ACTIVE_STATUSES]
        elif status == "finished":
            jobs = [j for j in jobs if j.status in FINISHED_STATUSES]
        elif status is not None:
            jobs = [j for j in jobs if j.status == status]
        return jobs[:limit] if limit is not None else jobs

    def wait(self, job_id: str, timeout: float | None = None) -> AnyJob:
        """Block until the job ends (or ``timeout``); return it."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.done.wait(timeout)
        return self.get(job_id)

    def outcome(self, job: J) -> J:
        """Wait for ``job`` to end and return it finished, or raise its error (for ``wait=true`` callers, who
        expect the seed's status codes: 507, 404, 409 for a cancelled job...)."""
        finished = self.wait(job.id)
        raise_for_job(finished)
        return cast(J, finished)

    # ----------------------------------------------------------------- stopping, resuming, forgetting

    def cancel(self, job_id: str, *, purge: bool = False, timeout: float = 10.0) -> tuple[AnyJob, int]:
        """Stop a job (waiting up to ``timeout`` for it to stop); with ``purge`` also remove what the kind keeps
        for a resume. Return the job and the bytes purged."""
        job = self.get(job_id)
        with self._lock:
            run = self._runs.get(job_id)
            waiting = run is not None and not run.started and not run.done.is_set()
            if run is not None and waiting:  # still queued behind another job: it ends now, never to start
                run.cancel.set()
                run.started = True
        if run is not None and waiting:
            run.update(status="cancelled", finished_at=datetime.now(UTC))
            run.done.set()
        elif run is not None and not run.done.is_set():
            run.cancel.set()
            run.done.wait(timeout)
        purged = self._kind(job.kind).purge(job) if purge else 0
        return self.get(job_id), purged

    def resume(self, job_id: str, secret: str | None = None) -> AnyJob:
        """Run a cancelled, failed or interrupted job again (a running one is returned as it is)."""
        job = self.get(job_id)
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None and not run.done.is_set():
            return job
        kind = self._kind(job.kind)
        if job.status == "ready":
            raise InvalidRequestError(f"Job {job_id} is already done.", job_id=job_id)
        if not kind.resumable:
            raise InvalidRequestError(f"A {job.kind} job cannot be resumed; start a new one.", job_id=job_id)
        fresh: AnyJob = kind.restart(job).model_copy(
            update={"status": "queued", "error": None, "finished_at": None, "updated_at": datetime.now(UTC)}
        )
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None and not run.done.is_set():  # resumed twice at once: the first one runs
                running: AnyJob = self._public(run.kind.view(run))
                return running
            return self._launch(fresh, secret)

    def clear(self, *, kind: str | None = None) -> int:
        """Forget finished jobs (of ``kind``, or all); running ones stay. Return how many went."""
        with self._lock:
            gone = [
                i
                for i, j in self._jobs.items()
                if j.status in FINISHED_STATUSES and (kind is None or j.kind == kind) and not self._running(i)
            ]
            records = [self._jobs[job_id] for job_id in gone]
            for job_id in gone:
                self._forget(job_id)
        self.store.delete(gone)
        self._forgotten(records)
        return len(gone)

    def prune(self) -> None:
        """Keep the newest ``job_history_limit`` finished jobs; older ones are deleted from memory and the store."""
        with self._lock:
            finished = sorted(
                (j for i, j in self._jobs.items() if j.status in FINISHED_STATUSES and not self._running(i)),
                key=lambda j: j.created_at,
                reverse=True,
            )
            records = finished[self.history_limit :]
            gone = [j.id for j in records]
            for job_id in gone:
                self._forget(job_id)
        if gone:
            self.store.delete(gone)
            self._forgotten(records)
            logger.info("pruned %d finished job(s) beyond the last %d", len(gone), self.history_limit)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop running jobs as ``interrupted`` (resumable after the restart), then close the store."""
        with self._lock:
            runs = [r for r in self._runs.values() if not r.done.is_set()]
            waiting = [r for r in runs if not r.started]
            for run in waiting:  # queued behind another: never started, so listed as interrupted after the restart
                run.started = True
        for run in runs:
            run.cancel_as = "interrupted"
            run.cancel.set()
        for run in runs:
            if run in waiting:
                run.done.set()
            else:
                run.done.wait(timeout)
        for worker in self._workers.values():
            worker.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    # ----------------------------------------------------------------- internals

    def _kind(self, name: str) -> JobKind[Any]:
        try:
            return self._kinds[name]
        except KeyError:
            raise InvalidRequestError(f"Jobs of kind '{name}' are not available here.", kind=name) from None

    def _running(self, job_id: str) -> bool:
        run = self._runs.get(job_id)
        return run is not None and not run.done.is_set()

    def _forgotten(self, records: Sequence[AnyJob]) -> None:
        for job in records:
            kind = self._kinds.get(job.kind)
            if kind is not None:
                try:
                    kind.forget(job)
                except OSError:
                    logger.warning("could not remove what job %s kept", job.id, exc_info=True)

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._runs.pop(job_id, None)

    def _public(self, job: J) -> J:
        """The record as the API shows it: ``resumable`` follows from the kind and the status."""
        kind = self._kinds.get(job.kind)
        resumable = bool(kind and kind.resumable and job.status in RESUMABLE_STATUSES)
        phases = list(kind.phases) if kind else job.phases
        if job.resumable != resumable or job.phases != phases:
            job = cast(J, job.model_copy(update={"resumable": resumable, "phases": phases}))
        return job

    def _launch(self, job: J, secret: str | None) -> J:
        kind = self._kind(job.kind)
        run: JobRun[Any] = JobRun(job=job, kind=kind, secret=secret, state=kind.new_state(job))
        run._on_change = self._changed
        self._runs[job.id] = run
        self._jobs[job.id] = job
        self.store.save(job)
        if kind.serial:
            if kind.name not in self._workers:
                self._workers[kind.name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"orchard-{kind.name}")
            self._workers[kind.name].submit(self._work, run)
        else:
            threading.Thread(target=self._work, args=(run,), name=f"{job.kind}-{job.id}", daemon=True).start()
        return self._public(job)

    def _changed(self, run: JobRun[Any], phase: bool) -> None:
        job = run.kind.view(run)
        with self._lock:
            if job.id in self._jobs:
                self._jobs[job.id] = job
        if phase or time.monotonic() - run.persisted_at > PERSIST_EVERY_S:
            run.persisted_at = time.monotonic()
            self.store.save(job)

    def _work(self, run: JobRun[Any]) -> None:
        with self._lock:
            if run.started:  # cancelled while it waited
                return
            run.started = True
        job = run.job
        try:
            changes = run.kind.run(run)
            run.check_cancelled()
            run.update(status="ready", finished_at=datetime.now(UTC), **changes)
        except JobCancelled:
            error = None
            if run.cancel_as == "interrupted":
                error = JobError(code="interrupted", message="The server stopped during this job; resume it.")
            run.update(status=run.cancel_as, error=error, finished_at=datetime.now(UTC))
        except StudioError as exc:
            self._fail(run, exc)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._fail(run, InsufficientDiskError("The disk filled up during the job; free space and resume."))
            else:
                logger.exception("%s job %s failed", job.kind, job.id)
                self._fail(run, StudioError(f"The {job.kind} failed with an I/O error; the server log has details."))
        except Exception:
            logger.exception("%s job %s failed", job.kind, job.id)
            self._fail(run, StudioError(f"The {job.kind} failed unexpectedly; the server log has details."))
        finally:
            run.secret = None
            run.done.set()
            self.prune()

    def _fail(self, run: JobRun[Any], exc: StudioError) -> None:
        error = JobError(code=exc.code, message=exc.message, details={"status_code": exc.status_code, **exc.details})
        run.update(status="failed", error=error, finished_at=datetime.now(UTC))


def raise_for_job(job: JobBase) -> None:
    """Turn a failed job back into its error, for ``wait=true`` callers who expect the seed's status codes."""
    if job.status in ("cancelled", "interrupted"):
        raise ModelBusyError(f"Job {job.id} was {job.status}; resume it to continue.", job_id=job.id)
    if job.status != "failed" or job.error is None:
        return
    details = dict(job.error.details)
    status = int(details.pop("status_code", 500))
    error = StudioError(job.error.message, job_id=job.id, **details)
    error.status_code, error.code = status, job.error.code
    raise error
