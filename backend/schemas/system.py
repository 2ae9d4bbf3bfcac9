"""Response models for health and configuration."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


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


class ConfigResponse(BaseModel):
    settings: dict[str, Any]
    device: str
    dtype: str
    recommended_batch_size: int | None
