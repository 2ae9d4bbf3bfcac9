"""Long work as jobs: the download job, its progress, and the pre-download verdict."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

from backend.schemas.model import DeviceName, DtypeName, LoadOptions, ModelMetadata

JobStatus = Literal[
    "queued", "resolving", "downloading", "verifying", "loading", "ready", "failed", "cancelled", "interrupted"
]
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "resolving", "downloading", "verifying", "loading"})


class DownloadRequest(LoadOptions):
    """The seed's body (``model_id``, ``access_token``) plus what a download needs."""

    model_id: str = Field(..., min_length=1, max_length=200, examples=["gpt2", "Qwen/Qwen2.5-0.5B"])
    access_token: SecretStr | None = Field(None, description="Hub token for gated/private models; never stored.")
    revision: str | None = Field(None, max_length=200, description="Branch, tag or commit; default main.")
    include: list[str] | None = Field(None, description="Only files matching these glob patterns.")
    exclude: list[str] | None = Field(None, description="Skip files matching these glob patterns.")
    load: bool = Field(True, description="Load the model once downloaded (the seed's behaviour).")
    wait: bool = Field(False, description="Block until the job ends and return it (for scripts and curl).")


class ResumeRequest(BaseModel):
    access_token: SecretStr | None = Field(None, description="Needed again for gated/private models.")


class JobProgress(BaseModel):
    completed: int = Field(0, description="Bytes on disk for this download (cached and resumed bytes included).")
    total: int | None = Field(None, description="Bytes of all files the model needs.")
    percent: float | None = None
    files_done: int = 0
    files_total: int | None = None
    bytes_per_second: float | None = None
    eta_seconds: float | None = None
    stalled: bool = Field(False, description="True when no byte arrived for a while during downloading.")


class JobError(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class Job(BaseModel):
    id: str
    kind: Literal["download"] = "download"
    model_id: str
    revision: str | None
    commit: str | None = None
    status: JobStatus
    progress: JobProgress = Field(default_factory=JobProgress)
    load: bool = True
    dtype: DtypeName | None = None
    device: DeviceName | None = None
    force: bool = False
    trust_remote_code: bool = False
    include: list[str] | None = None
    exclude: list[str] | None = None
    path: str | None = Field(None, description="The downloaded snapshot folder, once known.")
    error: JobError | None = None
    result: ModelMetadata | None = Field(None, description="The loaded model, when the job loaded it.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class JobList(BaseModel):
    jobs: list[Job]


class CancelResponse(BaseModel):
    job: Job
    purged_bytes: int = Field(0, description="Bytes of partial files removed (with purge=true).")


class DownloadCheck(BaseModel):
    """The verdict before the first byte: will it fit on disk, and (to load it) in memory?"""

    model_id: str
    revision: str | None
    commit: str
    files_total: int
    bytes_total: int
    bytes_cached: int
    bytes_to_fetch: int
    disk_free_bytes: int
    fits_disk: bool
    num_parameters: int | None
    dtype: str
    device: str
    memory_required_gb: float | None
    memory_available_gb: float
    fits_memory: bool
    fits: bool
    disk_reason: str
    memory_reason: str
    reason: str
