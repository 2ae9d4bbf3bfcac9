"""What every job has, whatever its kind: status, phases, progress with a unit, the error shape.

Kept apart from :mod:`backend.schemas.jobs` (the union of every kind) so each kind's schema module can build on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

JobKindName = Literal["download", "load", "train", "merge", "export", "ingest", "reembed"]
# Every phase of every kind, then the ends. A kind lists its own phases in ``JobBase.phases``.
JobStatus = Literal[
    "queued",
    "resolving",
    "downloading",
    "verifying",
    "preparing",
    "loading",
    "training",
    "merging",
    "exporting",
    "saving",
    "ingesting",
    "embedding",
    "ready",
    "failed",
    "cancelled",
    "interrupted",
]
FINISHED_STATUSES: frozenset[str] = frozenset({"ready", "failed", "cancelled", "interrupted"})
ACTIVE_STATUSES: frozenset[str] = frozenset(set(JobStatus.__args__) - FINISHED_STATUSES)  # type: ignore[attr-defined]
ProgressUnit = Literal["bytes", "tensors", "steps", "files", "documents", "chunks"]


class JobProgress(BaseModel):
    """How far a job is: ``completed`` of ``total`` in ``unit``; the other fields where the kind has them."""

    completed: int = Field(0, description="Units done so far (for downloads: bytes on disk, cached ones included).")
    total: int | None = Field(None, description="Units in all; unknown until the job has resolved its work.")
    unit: ProgressUnit = "bytes"
    percent: float | None = None
    files_done: int = 0
    files_total: int | None = None
    bytes_per_second: float | None = None
    eta_seconds: float | None = None
    stalled: bool = Field(False, description="True when no byte arrived for a while during downloading.")


class JobError(BaseModel):
    """Why a job failed, in the one error shape (``code``, ``message``, details such as ``status_code``)."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class JobBase(BaseModel):
    """What every job has, whatever its kind."""

    id: str
    kind: JobKindName
    title: str = Field("", description="What the job does, for a person: 'Download gpt2'.")
    status: JobStatus
    phases: list[str] = Field(default_factory=list, description="The kind's phases, in the order they run.")
    progress: JobProgress = Field(default_factory=JobProgress)
    error: JobError | None = None
    resumable: bool = Field(False, description="True when POST /jobs/{id}/resume can run it again.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
