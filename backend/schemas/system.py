"""Response models for health and configuration."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from backend.schemas.jobs import DownloadJob, LoadJob
from backend.schemas.model import ModelMetadata
from backend.utils.mac_optimization import MemoryStats


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    warmup: Literal["pending", "running", "done", "failed", "off"]


class ModelHealthResponse(BaseModel):
    status: Literal["healthy"] = "healthy"
    model_loaded: bool
    model_id: str | None
    loading: str | None
    device: str
    dtype: str


class EngineInfo(BaseModel):
    """An engine models can run on, and whether this installation has it."""

    name: Literal["transformers", "llama.cpp"]
    available: bool
    version: str | None = None
    runs: str = Field(description="What it runs.")
    gpu_offload: bool | None = Field(None, description="llama.cpp: whether this build can put layers on a GPU.")
    hint: str | None = Field(None, description="How to turn it on, where it is missing.")


class ConfigResponse(BaseModel):
    settings: dict[str, Any]
    device: str
    dtype: str
    recommended_batch_size: int | None
    engines: list[EngineInfo] = Field(default_factory=list)


class CurrentModelResponse(BaseModel):
    loaded: bool
    loading: str | None = Field(None, description="The model being loaded now, if any.")
    loading_job: Annotated[DownloadJob | LoadJob, Field(discriminator="kind")] | None = Field(
        None, description="The job loading it (a load job, or a download in its loading phase), if any."
    )
    activity: Literal["idle", "loading", "generating"] = Field(
        "idle", description="What the model cache is doing: loading a model, or generating chat replies."
    )
    generations: int = Field(0, description="Chat replies running or waiting on the loaded model now.")
    metadata: ModelMetadata | None
    memory: MemoryStats
