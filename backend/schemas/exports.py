"""GGUF exports: the request, what a model can be exported as, the job, and the finished export."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.schemas.job_base import JobBase

Quantization = Literal[
    "f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0",
    "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m", "q2_k",
]  # fmt: skip


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str | None = Field(
        None,
        min_length=1,
        max_length=300,
        description="A local model id; default the loaded model, with its adapter merged if one is attached.",
    )
    adapter_id: str | None = Field(None, min_length=1, max_length=100, description="An adapter to merge first.")
    quantization: Quantization = Field(
        "q8_0",
        description="Weight type: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0 (written in numpy); the K-quants "
        "(q6_k ... q2_k) only where llama.cpp's quantizer is installed.",
    )
    name: str | None = Field(
        None, min_length=1, max_length=100, description="The file's name (without .gguf); default model-type."
    )


class QuantizationOption(BaseModel):
    name: Quantization
    expected_bytes: int = Field(description="About how large the file will be.")
    available: bool
    reason: str | None = Field(None, description="Why it is not available here.")
    check: str = Field(description="What the export's self-check requires at this type.")


class ExportOptions(BaseModel):
    """What a model can be exported as, before any work."""

    model_id: str
    adapter_id: str | None = None
    architecture: str | None
    supported: bool
    reason: str | None = None
    num_parameters: int | None
    context_length: int | None
    quantizations: list[QuantizationOption]
    supported_architectures: list[str]


class ExportSpec(BaseModel):
    """What the export process reads (written to the run folder as spec.json)."""

    job_id: str
    model_id: str
    model_path: str
    adapter_id: str | None = None
    adapter_path: str | None = None
    quantization: Quantization
    name: str
    staging_dir: str = Field(description="A hidden folder under the exports folder, renamed into place when done.")


class ExportCheck(BaseModel):
    """The export read back and compared with the source model on a few probe texts."""

    engine: Literal["llama.cpp", "transformers"] = Field(description="What read the file back.")
    probes: int
    positions: int = Field(description="Token positions compared.")
    tokenizer_match: bool = Field(description="The file's tokenizer gave the source tokenizer's ids on every probe.")
    mismatched_probes: list[int] = Field(default_factory=list)
    max_abs_diff: float = Field(description="Largest difference of any logit.")
    max_relative_diff: float = Field(description="max_abs_diff over the source's largest logit.")
    top1_agreement: float = Field(description="Share of positions where both pick the same most likely token.")
    bound: str = Field(description="What this type must reach.")
    passed: bool


class ExportInfo(BaseModel):
    """A finished export: the file, where it came from, and its check."""

    id: str
    name: str
    file_name: str
    path: str
    size_bytes: int
    sha256: str
    quantization: Quantization
    model_id: str
    adapter_id: str | None = None
    architecture: str
    context_length: int | None = None
    num_parameters: int
    tensor_types: dict[str, int] = Field(description="How many tensors were written at each type.")
    check: ExportCheck
    modelfile: str = Field(description="The Ollama Modelfile written beside the file.")
    seconds: float = Field(description="The whole export: merge, write, quantize, check.")
    write_seconds: float = Field(description="Writing (and quantizing) the file.")
    check_seconds: float = Field(description="The self-check: the source's logits, the file read back and compared.")
    created_at: datetime


class ExportList(BaseModel):
    exports: list[ExportInfo]


class ExportJob(JobBase):
    """A model written as one GGUF file, then checked against the source."""

    kind: Literal["export"]
    model_id: str
    adapter_id: str | None = None
    quantization: Quantization
    name: str
    spec: ExportSpec
    worker_pid: int | None = None
    result: ExportInfo | None = None
