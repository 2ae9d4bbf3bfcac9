"""Orchard's settings, read from the environment (prefix ``ORCHARD_``) and an optional ``.env`` file.

Nothing here runs at import time: :func:`get_settings` builds the settings on first use and caches them, and
:meth:`Settings.ensure_dirs` creates the directories when the app starts, so tests can build their own
``Settings(home_dir=tmp_path)`` and pass it to ``create_app``.

The Hugging Face variables users already set are honoured: ``HF_TOKEN`` for the token, ``HF_ENDPOINT`` for
the Hub address, and ``HF_HUB_CACHE`` / ``HF_HOME`` for the cache (each overridden by its ``ORCHARD_`` twin).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.errors import InvalidRequestError

DeviceSetting = Literal["auto", "cpu", "cuda", "mps"]
DtypeSetting = Literal["auto", "float32", "float16", "bfloat16"]


def _default_hf_cache() -> Path:
    """The Hub cache huggingface_hub itself would use, read from the environment now (not at its import)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


class Settings(BaseSettings):
    """Every setting Orchard reads. Each field is ``ORCHARD_<NAME>`` in the environment or ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHARD_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- API ---
    host: str = Field("127.0.0.1", description="Address the server binds to. Keep 127.0.0.1 unless you mean it.")
    port: int = Field(8000, ge=1, le=65535, description="Port the server listens on.")
    api_key: SecretStr | None = Field(
        None,
        description="When set, every API request must send it (Authorization: Bearer <key>, or X-API-Key). "
        "Needed to answer other machines.",
    )
    allow_remote_without_key: bool = Field(
        False,
        description="Answer requests from other machines although no API key is set. Off: only this machine may.",
    )
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:5173", "http://127.0.0.1:5173"],
        description="Browser origins allowed to call the API (JSON list). The Vite dev server by default.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Logging level.")
    ui_dir: Path | None = Field(
        None, description="The built web app served at /. Default: frontend/dist next to the backend package."
    )

    # --- Hugging Face ---
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ORCHARD_HF_TOKEN", "HF_TOKEN"),
        description="Hub access token for gated/private models (also read from HF_TOKEN). Never returned or logged.",
    )
    hf_endpoint: str = Field(
        "https://huggingface.co",
        validation_alias=AliasChoices("ORCHARD_HF_ENDPOINT", "HF_ENDPOINT"),
        description="Hub address (also read from HF_ENDPOINT), e.g. a mirror.",
    )
    hf_cache_dir: Path = Field(
        default_factory=_default_hf_cache,
        validation_alias=AliasChoices("ORCHARD_HF_CACHE_DIR", "HF_HUB_CACHE"),
        description="Hub cache for downloads (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).",
    )

    # --- Paths ---
    home_dir: Path = Field(
        Path("~/.orchard"), description="Orchard's own folder; the three folders below default to inside it."
    )
    models_dir: Path | None = Field(None, description="Local model folders (imports and uploads). Default HOME/models.")
    data_dir: Path | None = Field(None, description="Datasets and Orchard's own state. Default HOME/data.")
    outputs_dir: Path | None = Field(None, description="Training runs and exports. Default HOME/outputs.")
    model_roots: list[Path] = Field(
        default_factory=list,
        description="More folders (JSON list) whose model folders may be loaded by path; the models directory and "
        "the Hub cache always are.",
    )

    # --- Loading ---
    device: DeviceSetting = Field("auto", description="Device for models: auto picks mps > cuda > cpu.")
    dtype: DtypeSetting = Field(
        "auto", description="Weights dtype: auto is bf16 where supported, fp16 on older MPS, fp32 on CPU."
    )
    trust_remote_code: bool = Field(
        False, description="Allow models that ship their own Python code. Off: such models are refused."
    )
    allow_pickle_weights: bool = Field(
        False, description="Allow pickle (.bin/.pt) weights when a model has no safetensors. Off by default."
    )
    memory_safety_margin_gb: float = Field(
        1.0, ge=0, description="Memory kept free for the OS and the app when deciding whether a model fits."
    )
    disk_quota_gb: float | None = Field(
        None, gt=0, description="Most disk Orchard may fill (Hub cache + models), in GB; empty = the whole disk."
    )
    download_stall_seconds: float = Field(
        30.0, gt=0, description="A download with no byte for this long is reported as stalled."
    )
    max_upload_gb: float = Field(20.0, gt=0, description="Largest model upload accepted, in GB (uncompressed).")
    max_dataset_mb: float = Field(
        256.0, gt=0, description="Largest dataset upload accepted (POST /datasets), in MB; it is read into memory."
    )
    warmup: bool = Field(
        True, description="Import torch/transformers in the background at start-up so the first load is fast."
    )
    job_history_limit: int = Field(
        200, ge=1, description="Finished jobs kept in the job history (downloads, loads, ...); older ones are pruned."
    )

    # --- Chat ---
    chat_max_new_tokens: int = Field(
        512, ge=1, description="Tokens a reply may have when the request does not say (max_tokens)."
    )
    chat_max_batch: int = Field(
        8,
        ge=1,
        le=256,
        description="Chat replies that share one decoding step (batched), on transformers and llama.cpp; "
        "1 = one at a time.",
    )
    chat_queue_size: int = Field(
        8, ge=0, description="Chat requests that may wait for the model; past it they get 503 with Retry-After."
    )
    llama_context: int = Field(
        4096,
        ge=256,
        description="Context length, in tokens, of GGUF models on llama.cpp (at most the model's own); "
        "its KV cache is allocated at load and shared by the replies that run together.",
    )

    # --- Training defaults (used by fine-tuning) ---
    train_batch_size: int | None = Field(None, ge=1, description="Batch size; empty = the optimizer's choice.")
    train_learning_rate: float = Field(2e-4, gt=0, description="Learning rate for fine-tuning.")
    train_epochs: int = Field(3, ge=1, description="Epochs for fine-tuning.")
    train_max_seq_length: int = Field(512, ge=8, description="Longest training sequence, in tokens.")
    train_gradient_accumulation_steps: int = Field(4, ge=1, description="Gradient accumulation steps.")
    train_max_batch_size: int = Field(64, ge=1, description="Upper bound for the optimizer's batch size.")

    # --- LoRA defaults ---
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: list[str] | None = Field(
        None, description="Modules LoRA adapts (JSON list); empty = every linear layer but the output (all-linear)."
    )

    # --- RAG defaults ---
    rag_embedding_model: str = Field("all-MiniLM-L6-v2", description="Sentence-embedding model for RAG.")
    rag_chunk_size: int = Field(
        256, ge=16, description="Tokens per document chunk (the embedder's), at most what the embedder reads."
    )
    rag_chunk_overlap: int = Field(32, ge=0, description="Tokens shared by neighbouring chunks.")
    rag_top_k: int = Field(5, ge=1, description="Chunks retrieved per question.")
    rag_max_file_mb: float = Field(100.0, gt=0, description="Largest document accepted for a collection, in MB.")
    rag_database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL with pgvector for the RAG index (postgresql://user:password@host:5432/db, "
        "?sslmode=require to encrypt); new collections are indexed there. Empty: the SQLite file in the data "
        "folder. Never returned or logged.",
    )

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        self.home_dir = self.home_dir.expanduser()
        self.hf_cache_dir = self.hf_cache_dir.expanduser()
        self.models_dir = (self.models_dir or self.home_dir / "models").expanduser()
        self.data_dir = (self.data_dir or self.home_dir / "data").expanduser()
        self.outputs_dir = (self.outputs_dir or self.home_dir / "outputs").expanduser()
        self.hf_endpoint = self.hf_endpoint.rstrip("/")
        return self

    # The validator fills these; the properties give mypy (and callers) non-optional paths.
    @property
    def models_path(self) -> Path:
        assert self.models_dir is not None
        return self.models_dir

    @property
    def data_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir

    @property
    def outputs_path(self) -> Path:
        assert self.outputs_dir is not None
        return self.outputs_dir

    def allowed_model_roots(self) -> list[Path]:
        """Folders a ``model_path`` must lie in (after resolving symlinks): models dir, Hub cache, model_roots."""
        roots = [self.models_path, self.hf_cache_dir, *self.model_roots]
        return [Path(root).expanduser().resolve() for root in roots]

    def ensure_dirs(self) -> None:
        """Create the folders Orchard writes to (called at start-up, never at import)."""
        for path in (self.models_path, self.data_path, self.outputs_path, self.hf_cache_dir):
            path.mkdir(parents=True, exist_ok=True)

    def token(self, access_token: str | None = None) -> str | None:
        """The token for a Hub call: the request's own, else the configured one, else none."""
        if access_token:
            if not (access_token.isascii() and access_token.isprintable()) or " " in access_token:
                # It goes into an HTTP header: say so here rather than fail there.
                raise InvalidRequestError("access_token is not a Hub token: tokens are printable ASCII (hf_...).")
            return access_token
        return self.hf_token.get_secret_value() if self.hf_token else None

    def public_dict(self) -> dict[str, Any]:
        """Every setting, JSON-ready, with secrets redacted (what ``GET /config`` returns)."""
        data = self.model_dump(mode="json")
        for secret in ("hf_token", "api_key", "rag_database_url"):
            data[secret] = "**********" if getattr(self, secret) else None
        return data


@lru_cache
def get_settings() -> Settings:
    """The process's settings, built on first use. ``get_settings.cache_clear()`` re-reads the environment."""
    return Settings()
