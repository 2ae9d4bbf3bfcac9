"""Jobs: every long action (download, load, ...) watched by polling or Server-Sent Events, cancelled, resumed.

``/jobs`` serves every kind. The older ``/model/jobs`` routes stay for downloads, answering as they always did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from backend.api.deps import JobManagerDep
from backend.schemas.job_base import ACTIVE_STATUSES, JobKindName, JobStatus
from backend.schemas.jobs import (
    AnyJob,
    CancelResponse,
    ClearJobsResponse,
    DownloadCancelResponse,
    DownloadJob,
    DownloadJobList,
    Job,
    JobList,
    ResumeRequest,
)
from backend.services.jobs import JobManager

router = APIRouter(prefix="/jobs", tags=["jobs"])
downloads_router = APIRouter(prefix="/model/jobs", tags=["jobs"])

EVENT_INTERVAL_S = 0.1
EVENTS_DOC: dict[int | str, dict[str, Any]] = {
    "default": {
        "description": "An error, in Orchard's one shape (JSON, before any event).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
}
PurgeQuery = Annotated[bool, Query(description="Also delete what the job kept for a resume (partial files).")]


async def _events(get: Callable[[], AnyJob]) -> AsyncIterator[ServerSentEvent]:
    """A ``progress`` event whenever the job changes, then ``end`` once it is over; each is the job's JSON."""
    last = None
    while True:
        job = get()
        payload = job.model_dump_json()
        if payload != last:
            last = payload
            yield ServerSentEvent(raw_data=payload, event="progress", id=job.updated_at.isoformat())
        if job.status not in ACTIVE_STATUSES:
            yield ServerSentEvent(raw_data=payload, event="end")
            return
        await asyncio.sleep(EVENT_INTERVAL_S)


def _token(body: ResumeRequest | None) -> str | None:
    return body.access_token.get_secret_value() if body and body.access_token else None


# --------------------------------------------------------------------- /jobs: every kind


@router.get("", operation_id="listJobs", response_model=JobList)
def list_jobs(
    jobs: JobManagerDep,
    kind: Annotated[JobKindName | None, Query(description="Only jobs of this kind.")] = None,
    status: Annotated[
        JobStatus | Literal["active", "finished"] | None,
        Query(description="Only jobs in this status; `active` or `finished` for either group."),
    ] = None,
    model_id: Annotated[
        str | None, Query(max_length=300, description="Only jobs about this model (download, load, train, export...).")
    ] = None,
    collection_id: Annotated[
        str | None, Query(max_length=100, description="Only jobs about this document collection (ingest, re-embed).")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="At most this many, newest first.")] = None,
) -> JobList:
    """Jobs of every kind, newest first: running, finished, and interrupted by a restart."""
    about = {"model_id": model_id, "collection_id": collection_id}
    return JobList(jobs=jobs.list(kind=kind, status=status, about=about, limit=limit))


@router.delete("", operation_id="clearJobs", response_model=ClearJobsResponse)
def clear_jobs(
    jobs: JobManagerDep, kind: Annotated[JobKindName | None, Query(description="Only jobs of this kind.")] = None
) -> ClearJobsResponse:
    """Remove finished jobs (ready, failed, cancelled, interrupted) from the history; running ones stay."""
    return ClearJobsResponse(removed=jobs.clear(kind=kind))


@router.get("/{job_id}", operation_id="getJob", response_model=Job)
def get_job(job_id: str, jobs: JobManagerDep) -> Any:
    return jobs.get(job_id)


def _existing(job_id: str, jobs: JobManagerDep) -> str:
    """404 for an unknown job before a stream starts (a generator's body only runs once the 200 is sent)."""
    jobs.get(job_id)
    return job_id


@router.get(
    "/{job_id}/events", operation_id="streamJobEvents", response_class=EventSourceResponse, responses=EVENTS_DOC
)
async def job_events(job_id: Annotated[str, Depends(_existing)], jobs: JobManagerDep) -> AsyncIterator[ServerSentEvent]:
    """The job as Server-Sent Events: ``progress`` whenever it changes, then ``end``; data as ``GET /jobs/{id}``."""
    async for event in _events(lambda: jobs.get(job_id)):
        yield event


@router.delete("/{job_id}", operation_id="cancelJob", response_model=CancelResponse)
def cancel_job(job_id: str, jobs: JobManagerDep, purge: PurgeQuery = False) -> CancelResponse:
    """Stop a job (a download within about two seconds, a load within a tensor); with ``purge``, drop its partial
    files too."""
    job, purged = jobs.cancel(job_id, purge=purge)
    return CancelResponse(job=job, purged_bytes=purged)


@router.post("/{job_id}/resume", operation_id="resumeJob", response_model=Job, status_code=202)
def resume_job(job_id: str, jobs: JobManagerDep, body: Annotated[ResumeRequest | None, Body()] = None) -> Any:
    """Run a cancelled, failed or interrupted job again (a download continues from the bytes on disk)."""
    return jobs.resume(job_id, _token(body))


# --------------------------------------------------------------------- /model/jobs: downloads, as before


def _download(jobs: JobManager, job_id: str) -> DownloadJob:
    job = jobs.get(job_id, kind="download")
    assert isinstance(job, DownloadJob)
    return job


@downloads_router.get("", operation_id="listDownloadJobs", response_model=DownloadJobList)
def list_download_jobs(jobs: JobManagerDep) -> DownloadJobList:
    """Every download job, newest first (``GET /jobs?kind=download``)."""
    return DownloadJobList(jobs=[j for j in jobs.list(kind="download") if isinstance(j, DownloadJob)])


@downloads_router.get("/{job_id}", operation_id="getDownloadJob", response_model=DownloadJob)
def get_download_job(job_id: str, jobs: JobManagerDep) -> DownloadJob:
    return _download(jobs, job_id)


def _existing_download(job_id: str, jobs: JobManagerDep) -> str:
    _download(jobs, job_id)
    return job_id


@downloads_router.get(
    "/{job_id}/events", operation_id="streamDownloadJobEvents", response_class=EventSourceResponse, responses=EVENTS_DOC
)
async def download_job_events(
    job_id: Annotated[str, Depends(_existing_download)], jobs: JobManagerDep
) -> AsyncIterator[ServerSentEvent]:
    """A download job as Server-Sent Events (as ``GET /jobs/{id}/events``)."""
    async for event in _events(lambda: _download(jobs, job_id)):
        yield event


@downloads_router.delete("/{job_id}", operation_id="cancelDownloadJob", response_model=DownloadCancelResponse)
def cancel_download_job(job_id: str, jobs: JobManagerDep, purge: PurgeQuery = False) -> DownloadCancelResponse:
    """Stop a download within about two seconds; its partial files stay for a resume unless ``purge``."""
    _download(jobs, job_id)
    job, purged = jobs.cancel(job_id, purge=purge)
    assert isinstance(job, DownloadJob)
    return DownloadCancelResponse(job=job, purged_bytes=purged)


@downloads_router.post(
    "/{job_id}/resume", operation_id="resumeDownloadJob", response_model=DownloadJob, status_code=202
)
def resume_download_job(
    job_id: str, jobs: JobManagerDep, body: Annotated[ResumeRequest | None, Body()] = None
) -> DownloadJob:
    """Run a cancelled, failed or interrupted download again from the bytes already on disk."""
    _download(jobs, job_id)
    job = jobs.resume(job_id, _token(body))
    assert isinstance(job, DownloadJob)
    return job
