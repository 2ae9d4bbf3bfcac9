"""Fine-tuning: the request for a LoRA run, its memory plan, the job's progress and result, and adapters.

A :class:`TrainRequest` leaves most fields empty; the service fills them from the settings into the concrete
:class:`TrainSpec` that the job records and the training process reads, so a run is reproducible from its job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.schemas.job_base import JobBase, JobProgress


class LoraRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int | None = Field(None, ge=1, le=1024, description="LoRA rank; default ORCHARD_LORA_R.")
    alpha: int | None = Field(None, ge=1, description="LoRA alpha (scaling = alpha / r); default ORCHARD_LORA_ALPHA.")
    dropout: float | None = Field(None, ge=0, lt=1, description="LoRA dropout; default ORCHARD_LORA_DROPOUT.")
    target_modules: list[str] | None = Field(
        None, description="Module names LoRA adapts; default every linear layer but the output ('all-linear')."
    )


class LoraSpec(BaseModel):
    r: int
    alpha: int
    dropout: float
    target_modules: list[str] | Literal["all-linear"]


class TrainRequest(BaseModel):
    """What to train. Empty fields take the settings' defaults (``ORCHARD_TRAIN_*``, ``ORCHARD_LORA_*``)."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=100)
    model_id: str | None = Field(
        None, min_length=1, max_length=300, description="A local model id; default the loaded model."
    )
    name: str | None = Field(None, min_length=1, max_length=100, description="The adapter's name.")
    epochs: int | None = Field(None, ge=1, le=1000)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float | None = Field(None, gt=0, le=1)
    batch_size: int | None = Field(None, ge=1, le=4096, description="Sequences per step; default the plan's choice.")
    gradient_accumulation_steps: int | None = Field(None, ge=1, le=1024)
    max_seq_length: int | None = Field(None, ge=8, le=131072)
    lora: LoraRequest = Field(default_factory=LoraRequest)
    validation_split: float = Field(0.1, ge=0, le=0.5, description="Share of rows held out for the eval loss.")
    seed: int = Field(42, ge=0)
    force: bool = Field(False, description="Start even when the plan says it will not fit in memory.")


class MemoryBreakdown(BaseModel):
    """GB a run needs, by part (AdamW: two fp32 states per trainable parameter; activations per batch)."""

    runtime_gb: float = Field(description="The training process before any model: Python, torch, the libraries.")
    weights_gb: float
    adapter_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float


class TrainPlan(BaseModel):
    """The answer before anything starts: what a run needs against what the device has free."""

    model_id: str
    model_path: str
    dataset_id: str
    device: str
    dtype: str = Field(description="The base weights' dtype in training; the adapter trains in float32.")
    num_parameters: int
    trainable_parameters: int
    batch_size: int
    proposed_batch_size: int = Field(description="The largest power-of-two batch that fits (capped by the setting).")
    gradient_accumulation_steps: int
    max_seq_length: int
    longest_example_tokens: int
    train_examples: int
    eval_examples: int
    dropped_examples: int = Field(description="Rows over max_seq_length or with nothing to train on: left out.")
    total_steps: int
    memory: MemoryBreakdown
    available_gb: float = Field(description="Free on the device now, less the safety margin.")
    loaded_model_gb: float = Field(description="The chat model's memory (it stays loaded during training).")
    fits: bool
    reason: str


class TrainSpec(BaseModel):
    """Everything the training process needs, resolved; written to ``spec.json`` in the run folder."""

    job_id: str
    name: str
    model_id: str
    model_path: str
    dataset_id: str
    dataset_name: str
    rows_path: str
    run_dir: str
    device: str
    dtype: str
    epochs: int
    max_steps: int | None
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    lora: LoraSpec
    validation_split: float
    seed: int
    samples: int = Field(3, description="Held-out prompts the base and the tuned model answer at the end.")


class TrainProgress(JobProgress):
    """Progress in optimizer steps, with the figures of the latest logging step."""

    unit: Literal["steps"] = "steps"
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None


class TrainPoint(BaseModel):
    """One point of the loss curve (a training log, an evaluation, or both at one step)."""

    step: int
    epoch: float
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None


class SampleAnswer(BaseModel):
    """A held-out prompt answered greedily by the base and by the tuned model."""

    prompt: str
    expected: str
    base: str
    tuned: str


class TrainResult(BaseModel):
    adapter_id: str
    adapter_path: str
    steps: int
    epochs: float
    train_loss: float | None = Field(description="The last logged training loss.")
    first_eval_loss: float | None = Field(description="The held-out loss before the first step.")
    eval_loss: float | None = Field(description="The held-out loss at the end.")
    runtime_seconds: float = Field(
        description="The whole job: the process's start, the model's load, training, saving."
    )
    train_seconds: float = Field(
        description="The Trainer's own time for the steps (evaluations and checkpoints included)."
    )
    peak_memory_gb: float | None = Field(
        None, description="The training process's peak: resident memory (CPU, MPS), or allocated on the GPU (CUDA)."
    )
    samples: list[SampleAnswer]


class TrainJob(JobBase):
    """A LoRA fine-tune of a local model on a dataset, run in its own process."""

    kind: Literal["train"]
    spec: TrainSpec
    plan: TrainPlan
    progress: TrainProgress = Field(default_factory=TrainProgress)
    history: list[TrainPoint] = Field(default_factory=list, description="The loss curve, one point per log.")
    worker_pid: int | None = Field(None, description="The training process, while it runs.")
    result: TrainResult | None = None


class TrainJobList(BaseModel):
    jobs: list[TrainJob]


class AdapterInfo(BaseModel):
    """A trained LoRA adapter, as ``orchard_adapter.json`` in its folder records it."""

    id: str
    name: str
    path: str
    base_model_id: str
    base_model_path: str
    base_architecture: str | None
    dataset_id: str
    dataset_name: str
    lora: LoraSpec
    chat_template: str | None = Field(description="The template trained with; null: chat's fallback transcript.")
    eos_token: str | None
    steps: int
    train_loss: float | None
    eval_loss: float | None
    size_bytes: int
    created_at: datetime
    job_id: str


class AdapterList(BaseModel):
    adapters: list[AdapterInfo]


class DeleteAdapterResponse(BaseModel):
    id: str
    freed_bytes: int


class AttachAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter_id: str = Field(min_length=1, max_length=100)
    force: bool = Field(False, description="Attach even though the chat template differs from the one trained with.")


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="The new local model's folder name.")


class MergeSpec(BaseModel):
    job_id: str
    adapter_path: str
    base_model_path: str
    output_dir: str = Field(description="A hidden staging folder; the job renames it into place when done.")


class MergeJob(JobBase):
    """An adapter merged into its base model, written as a new local model."""

    kind: Literal["merge"]
    adapter_id: str
    name: str
    spec: MergeSpec
    worker_pid: int | None = None
    result: str | None = Field(None, description="The new local model's id.")
