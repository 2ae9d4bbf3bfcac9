"""Long work as jobs: the fields every job has, one schema per kind, and the pre-download verdict.

A job's JSON is the same by polling (``GET /jobs/{id}``) and by Server-Sent Events (``.../events``). Every kind
shares :class:`JobBase` (id, kind, status, the kind's phases, progress with a unit, error, resumable); a kind adds
its own request fields and ``result``. :data:`Job` is the union the API speaks, told apart by ``kind``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, TypeAdapter

from backend.schemas.exports import ExportJob
from backend.schemas.job_base import JobBase
from backend.schemas.model import DeviceName, DtypeName, EngineName, LoadOptions, ModelMetadata
from backend.schemas.rag import IngestJob, ReembedJob
from backend.schemas.training import MergeJob, TrainJob


class DownloadJob(JobBase):
    """A model fetched from the Hub (and by default loaded)."""

    kind: Literal["download"]
    model_id: str
    revision: str | None
    commit: str | None = None
    load: bool = True
    dtype: DtypeName | None = None
    device: DeviceName | None = None
    force: bool = False
    trust_remote_code: bool = False
    include: list[str] | None = None
    exclude: list[str] | None = None
    gguf_file: str | None = Field(None, description="From a repo of GGUF files: the one fetched.")
    engine: EngineName | None = None
    path: str | None = Field(None, description="The downloaded snapshot folder, once known.")
    result: ModelMetadata | None = Field(None, description="The loaded model, when the job loaded it.")


class LoadJob(JobBase):
    """A local model (a folder, a local model id or a Hub-cache repo) loaded into the model cache."""

    kind: Literal["load"]
    model_id: str = Field(description="What was asked for; the loaded model's id once resolved.")
    model_path: str | None = None
    dtype: DtypeName | None = None
    device: DeviceName | None = None
    force: bool = False
    trust_remote_code: bool = False
    engine: EngineName | None = Field(None, description="The engine asked for; the result names the one used.")
    path: str | None = Field(None, description="The model folder, once resolved.")
    result: ModelMetadata | None = Field(None, description="The loaded model's metadata, once ready.")


# A new kind adds its schema here.
AnyJob = DownloadJob | LoadJob | TrainJob | MergeJob | ExportJob | IngestJob | ReembedJob
Job = Annotated[AnyJob, Field(discriminator="kind")]
JOB_ADAPTER: TypeAdapter[AnyJob] = TypeAdapter(Job)


class JobList(BaseModel):
    jobs: list[Job]


class DownloadJobList(BaseModel):
    jobs: list[DownloadJob]


class DownloadRequest(LoadOptions):
    """The seed's body (``model_id``, ``access_token``) plus what a download needs."""

    model_id: str = Field(..., min_length=1, max_length=200, examples=["gpt2", "Qwen/Qwen2.5-0.5B"])
    access_token: SecretStr | None = Field(None, description="Hub token for gated/private models; never stored.")
    revision: str | None = Field(None, max_length=200, description="Branch, tag or commit; default main.")
    include: list[str] | None = Field(None, description="Only files matching these glob patterns.")
    exclude: list[str] | None = Field(None, description="Skip files matching these glob patterns.")
    gguf_file: str | None = Field(
        None,
        max_length=500,
        description="A repo of GGUF files (one per quantization): the file to fetch. Needed when it holds several; "
        "the 400 without it lists them with their sizes.",
    )
    load: bool = Field(True, description="Load the model once downloaded (the seed's behaviour).")
    wait: bool = Field(False, description="Block until the job ends and return it (for scripts and curl).")


class LoadRequest(LoadOptions):
    """Load a local model: ``model_id`` (a local model id, as listed by /model/local-models) or ``model_path``."""

    model_id: str | None = Field(None, min_length=1, max_length=300, examples=["tiny-llama", "Qwen/Qwen2.5-0.5B"])
    model_path: str | None = Field(None, min_length=1, max_length=4096, examples=["/path/to/model"])
    wait: bool = Field(False, description="Block until the model is loaded and return the finished job.")


class ResumeRequest(BaseModel):
    access_token: SecretStr | None = Field(None, description="Needed again for gated/private models.")


class CancelResponse(BaseModel):
    job: Job
    purged_bytes: int = Field(0, description="Bytes of partial files removed (with purge=true).")


class DownloadCancelResponse(BaseModel):
    job: DownloadJob
    purged_bytes: int = Field(0, description="Bytes of partial files removed (with purge=true).")


class ClearJobsResponse(BaseModel):
    removed: int = Field(description="Finished jobs removed from the history.")


class DownloadCheck(BaseModel):
    """The verdict before the first byte: will it fit on disk, and (to load it) in memory?"""

    model_id: str
    revision: str | None
    commit: str
    gguf_file: str | None = Field(None, description="A repo of GGUF files: the one this verdict is for.")
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
