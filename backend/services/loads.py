"""Loads as jobs: a local model (folder, local model id, Hub-cache repo) loaded into the process-wide cache.

``queued → preparing`` (find the folder, wait for the start-up warm-up, import the libraries) ``→ loading``
(progress in tensors, from transformers' own weight loading) ``→ ready`` with the model's metadata. Cancel stops
the load before the swap: the model loaded before stays, its memory untouched. The seed's blocking
``POST /model/upload?model_path=`` runs the same job and waits for it.
"""

from __future__ import annotations

from typing import Any

from backend.errors import InvalidRequestError, ModelBusyError
from backend.schemas.job_base import JobProgress
from backend.schemas.jobs import LoadJob, LoadRequest
from backend.services.jobs import JobKind, JobRun
from backend.services.model_service import ModelService
from backend.utils.libraries import import_libraries


class LoadKind(JobKind[LoadJob]):
    """Load jobs. Only one runs at a time (the cache's one loading slot); a second is refused with 409."""

    name = "load"
    schema = LoadJob
    phases = ("queued", "preparing", "loading")
    resumable = True  # running a load again is all a resume needs
    serial = True

    def __init__(self, models: ModelService) -> None:
        self.models = models

    def start(self, request: LoadRequest) -> LoadJob:
        """Start loading ``request.model_id`` or ``request.model_path``: 202 with the job.

        Raises:
            InvalidRequestError: neither or both of model_id and model_path.
            ModelNotFoundError, PathNotAllowedError: the folder is not there, or not in an allowed root.
            ModelBusyError: another load job is running.
        """
        if (request.model_id is None) == (request.model_path is None):
            raise InvalidRequestError("Pass model_id (a local model id) or model_path (a model folder), not both.")
        target = request.model_path or request.model_id or ""
        # Resolve now, so a missing or forbidden folder is a 404/403 on the request rather than a failed job.
        path, model_id, _ = self.models.resolve_local(target, from_request=True)
        self._refuse_if_busy()
        job: LoadJob = self.manager.new_record(
            self.name,
            title=f"Load {model_id}",
            model_id=model_id,
            model_path=request.model_path,
            dtype=request.dtype,
            device=request.device,
            force=request.force,
            trust_remote_code=request.trust_remote_code,
            engine=request.engine,
            path=str(path),
            progress=JobProgress(unit="tensors"),
        )
        return self.manager.submit(job)

    def restart(self, job: LoadJob) -> LoadJob:
        self._refuse_if_busy()
        return job.model_copy(update={"progress": JobProgress(unit="tensors"), "result": None})

    def run(self, run: JobRun[LoadJob]) -> dict[str, Any]:
        job = run.job
        run.update(status="preparing")
        while not self.models.wait_for_warmup(timeout=0.1):  # cancellable meanwhile
            run.check_cancelled()
        import_libraries()
        run.check_cancelled()
        # Resolved again: the folder may have gone (or, for a Hub-cache id, a newer revision come) since.
        path, model_id, revision = self.models.resolve_local(job.model_path or job.model_id, from_request=True)
        device, dtype = self.models.placement(job.device, job.dtype)
        run.update(status="loading", model_id=model_id, path=str(path))

        shown = -1.0

        def on_progress(done: int, total: int | None) -> None:
            nonlocal shown
            percent = round(100 * done / total, 2) if total else None
            # One update per percent is as smooth as the bar can show, and keeps a load of thousands of
            # tensors from spending its time copying the job record.
            if percent is None or percent - shown >= 1 or done == total:
                shown = percent if percent is not None else shown
                run.update(progress=JobProgress(completed=done, total=total, unit="tensors", percent=percent))

        loaded = self.models.load_folder(
            path,
            model_id=model_id,
            source="local",
            revision=revision,
            dtype=dtype,
            device=device,
            force=job.force,
            trust_remote_code=job.trust_remote_code,
            engine=job.engine,
            on_progress=on_progress,
            cancelled=run.cancel.is_set,
        )
        return {"result": loaded.metadata}

    def _refuse_if_busy(self) -> None:
        running = self.manager.find_active(self.name, lambda _: True)
        if running is not None:
            raise ModelBusyError(
                f"'{running.model_id}' is loading now (job {running.id}); wait for it or cancel it, then retry.",
                job_id=running.id,
                loading=running.model_id,
            )
