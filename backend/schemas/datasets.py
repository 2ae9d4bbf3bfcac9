"""Models for the ``/datasets`` endpoints: the responses, and the body of a Hub import (uploads are multipart forms)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

DatasetFormat = Literal["jsonl", "json", "csv", "parquet"]
DatasetShape = Literal["chat", "sharegpt", "instruction", "prompt_completion", "text"]
TemplateSource = Literal["model", "fallback"]


class DatasetInfo(BaseModel):
    """A stored dataset, as its metadata file holds it."""

    id: str
    name: str
    format: DatasetFormat = Field(description="The uploaded file's format.")
    shape: DatasetShape = Field(
        description="The rows' shape as uploaded; every shape is stored as chat messages, except text."
    )
    num_examples: int
    created_at: datetime
    source_filename: str = Field(description="The uploaded file's name, or the Hub file(s) imported.")
    source_bytes: int = Field(description="Size of the uploaded file (of all the files, for a Hub import).")
    source: str = Field(
        "upload",
        description="Where the rows came from: 'upload', or 'hub:<repo_id>@<commit>' for POST /datasets/from-hub.",
    )


class HubDatasetRequest(BaseModel):
    """Import a dataset repo from the Hugging Face Hub: one split's data files, or one named file."""

    model_config = ConfigDict(extra="forbid")

    repo_id: str = Field(..., min_length=1, max_length=200, examples=["tatsu-lab/alpaca"])
    revision: str | None = Field(None, min_length=1, max_length=200, description="Branch, tag or commit; default main.")
    file: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="A data file's path in the repo (.jsonl, .json, .csv or .parquet); default: the split's files.",
        examples=["data/train-00000-of-00001.parquet"],
    )
    split: str = Field(
        "train",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The split whose files are imported when `file` is not given: files whose path names it "
        "(train.jsonl, data/train-00000-of-00002.parquet, train/part-0.parquet), shards concatenated.",
    )
    name: str | None = Field(None, max_length=200, description="Name to show; default: the repo id and split.")
    access_token: SecretStr | None = Field(None, description="Hub token for gated/private repos; never stored.")


class DatasetList(BaseModel):
    datasets: list[DatasetInfo]


class CharacterStats(BaseModel):
    """Characters of the messages' contents (or the text) per row; no model needed."""

    min: int
    max: int
    mean: float
    total: int


class HistogramBin(BaseModel):
    start: int = Field(description="First length in the bin.")
    end: int = Field(description="End of the bin, exclusive (the last bin also holds `end - 1` at most).")
    count: int


class TokenStats(BaseModel):
    """Lengths in tokens with the loaded model's tokenizer, each row rendered through its chat template."""

    model_id: str
    chat_template: TemplateSource = Field(
        description="model: the tokenizer's own template; fallback: chat's User:/Assistant: transcript."
    )
    max_seq_length: int
    min: int
    max: int
    mean: float
    total: int
    histogram: list[HistogramBin] = Field(description="Row counts by token length; the counts sum to the rows.")
    over_max_seq_length: int = Field(description="Rows longer than max_seq_length tokens.")
    unrenderable: int = Field(description="Rows the chat template refused (not in the histogram).")
    kept_examples: int = Field(description="Rows training keeps under the policy.")
    policy: Literal["drop"] = Field(description="What training does with rows over max_seq_length.")
    policy_note: str


class DatasetStats(BaseModel):
    num_examples: int
    characters: CharacterStats
    duplicates: int = Field(description="Rows identical to an earlier row (after normalising).")
    no_trainable_tokens: int = Field(description="Rows with nothing to train on: no non-empty assistant turn.")
    tokens: TokenStats | None = Field(description="Null when no model is loaded; see tokens_reason.")
    tokens_reason: str | None = Field(description="Why `tokens` is null.")


class DatasetDetail(DatasetInfo):
    statistics: DatasetStats


class PreviewSegment(BaseModel):
    text: str
    trained: bool = Field(description="True for the assistant turns (end-of-turn included): the loss is on these.")


class PreviewRow(BaseModel):
    index: int = Field(description="Row number in the dataset, from 0.")
    text: str = Field(description="The whole rendered row: the segments' texts joined.")
    segments: list[PreviewSegment]
    num_tokens: int
    warning: str | None = Field(None, description="Set when the chat template could not render the row.")


class DatasetPreview(BaseModel):
    dataset_id: str
    model_id: str
    chat_template: TemplateSource
    total: int = Field(description="Rows in the dataset.")
    rows: list[PreviewRow]


class DeleteDatasetResponse(BaseModel):
    id: str
    status: Literal["deleted"] = "deleted"
    freed_bytes: int
