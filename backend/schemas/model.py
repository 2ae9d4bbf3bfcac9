"""Request and response models for the ``/model`` endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DtypeName = Literal["float32", "float16", "bfloat16"]
DeviceName = Literal["cpu", "cuda", "mps"]
EngineName = Literal["transformers", "llama.cpp"]
ModelSource = Literal["hub", "local", "upload"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadOptions(_Request):
    """How to load: all optional, the optimizer decides what is left out."""

    dtype: DtypeName | None = Field(None, description="Weights dtype; default: the optimizer's choice.")
    device: DeviceName | None = Field(None, description="Device; default: the optimizer's choice.")
    force: bool = Field(False, description="Load even when the model is estimated not to fit in memory.")
    trust_remote_code: bool = Field(
        False, description="Run the model's own code; also needs the trust_remote_code setting."
    )
    engine: EngineName | None = Field(
        None,
        description="What runs the model. Default: llama.cpp for a GGUF file where it is installed (transformers "
        "otherwise, dequantized), transformers for everything else. llama.cpp runs GGUF files only.",
    )


class AttachedAdapter(BaseModel):
    """A LoRA adapter on the loaded model: chat and /v1 answer through it."""

    id: str
    name: str


class ModelMetadata(BaseModel):
    """A loaded model, as the cache holds it."""

    model_id: str
    source: ModelSource
    path: str
    revision: str | None = None
    engine: EngineName = Field("transformers", description="What runs the model: transformers or llama.cpp.")
    architecture: str | None
    model_type: str | None
    num_parameters: int
    estimated_memory_gb: float
    measured_memory_gb: float = Field(description="Bytes held by the model's parameters and buffers, in GB.")
    device: str
    dtype: str
    vocab_size: int | None
    context_length: int | None
    has_chat_template: bool
    load_seconds: float
    loaded_at: datetime
    adapter: AttachedAdapter | None = Field(None, description="The LoRA adapter chat answers through, if any.")


class LoadResponse(BaseModel):
    status: Literal["loaded"] = "loaded"
    message: str
    metadata: ModelMetadata


class UnloadResponse(BaseModel):
    status: Literal["unloaded", "not_loaded"]
    message: str
    model_id: str | None = None
    freed_gb: float | None = Field(None, description="Process memory returned after the unload, in GB.")


class LocalModel(BaseModel):
    id: str = Field(description="What to pass to load: a folder name in the models directory, or a Hub repo id.")
    source: Literal["local", "hub-cache"]
    path: str
    revision: str | None = None
    size_bytes: int
    format: Literal["safetensors", "pytorch", "gguf", "none"]
    architecture: str | None
    model_type: str | None
    num_parameters: int | None
    quantization: str | None = Field(None, description="GGUF files: the weight type (Q8_0, Q4_K_M...).")
    context_length: int | None = Field(None, description="The context length the model was made for.")
    complete: bool = Field(description="True when the folder can be loaded as it is.")
    problems: list[str] = Field(default_factory=list)
    loaded: bool
    modified_at: datetime


class LocalModelsResponse(BaseModel):
    models: list[LocalModel]
    models_dir: str
    hf_cache_dir: str


class RepoFile(BaseModel):
    path: str
    size: int | None


class FitVerdict(BaseModel):
    fits: bool
    dtype: str
    device: str
    required_gb: float | None
    available_gb: float
    reason: str


class ModelInfoResponse(BaseModel):
    model_id: str
    revision: str | None
    sha: str | None
    architecture: str | None
    model_type: str | None
    library_name: str | None = None
    pipeline_tag: str | None = None
    gated: bool | str = False
    private: bool = False
    config: dict[str, Any] | None
    files: list[RepoFile]
    total_size_bytes: int
    weights_size_bytes: int
    weight_format: Literal["safetensors", "pytorch", "gguf", "none"]
    num_parameters: int | None
    parameters_by_dtype: dict[str, int]
    vocab_size: int | None
    context_length: int | None
    estimated_memory_gb: float | None
    memory: FitVerdict


class DeleteResponse(BaseModel):
    model_id: str
    path: str
    freed_bytes: int


class UploadResponse(BaseModel):
    model: LocalModel
    loaded: ModelMetadata | None = None
