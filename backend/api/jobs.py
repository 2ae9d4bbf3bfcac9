"""Jobs: watch (poll or Server-Sent Events), cancel and resume long work (downloads for now)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from backend.api.deps import DownloadManagerDep
from backend.schemas.jobs import ACTIVE_STATUSES, CancelResponse, Job, JobList, ResumeRequest

router = APIRouter(prefix="/model/jobs", tags=["jobs"])

EVENT_INTERVAL_S = 0.1


@router.get("", operation_id="listJobs", response_model=JobList)
def list_jobs(downloads: DownloadManagerDep) -> JobList:
    """Every job, newest first: running, finished, and interrupted by a restart."""
    return JobList(jobs=downloads.all())


@router.get("/{job_id}", operation_id="getJob", response_model=Job)
def get_job(job_id: str, downloads: DownloadManagerDep) -> Job:
    return downloads.get(job_id)


def existing_job(job_id: str, downloads: DownloadManagerDep) -> str:
    """404 for an unknown job before a stream starts (a generator's body only runs once the 200 is sent)."""
    downloads.get(job_id)
    return job_id


@router.get(
    "/{job_id}/events",
    operation_id="streamJobEvents",
    response_class=EventSourceResponse,
    responses={
        "default": {
            "description": "An error, in Orchard's one shape (JSON, before any event).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }
    },
)
async def job_events(
    job_id: Annotated[str, Depends(existing_job)], downloads: DownloadManagerDep
) -> AsyncIterator[ServerSentEvent]:
    """The job as Server-Sent Events: a ``progress`` event whenever it changes, then ``end`` when it is over.

    Each event's data is the same JSON as ``GET /model/jobs/{id}``.
    """
    last = None
    while True:
        job = downloads.get(job_id)
        payload = job.model_dump_json()
        if payload != last:
            last = payload
            yield ServerSentEvent(raw_data=payload, event="progress", id=job.updated_at.isoformat())
        if job.status not in ACTIVE_STATUSES:
            yield ServerSentEvent(raw_data=payload, event="end")
            return
        await asyncio.sleep(EVENT_INTERVAL_S)


@router.delete("/{job_id}", operation_id="cancelJob", response_model=CancelResponse)
def cancel_job(
    job_id: str,
    downloads: DownloadManagerDep,
    purge: Annotated[bool, Query(description="Also delete the partial files (no resume then).")] = False,
) -> CancelResponse:
    """Stop a job within about two seconds; its partial files stay for a resume unless ``purge``."""
    job, purged = downloads.cancel(job_id, purge=purge)
    return CancelResponse(job=job, purged_bytes=purged)


@router.post("/{job_id}/resume", operation_id="resumeJob", response_model=Job, status_code=202)
def resume_job(job_id: str, downloads: DownloadManagerDep, body: Annotated[ResumeRequest | None, Body()] = None) -> Job:
    """Run a cancelled, failed or interrupted job again from the bytes already on disk."""
    token = body.access_token.get_secret_value() if body and body.access_token else None
    return downloads.resume(job_id, token)
