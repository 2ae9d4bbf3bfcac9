"""One exception hierarchy for Orchard, and the handlers that turn every error into one JSON shape.

Every error body, validation errors included, is::

    {"error": {"code": "model_not_found", "message": "what happened and what to do next", ...details}}

Services raise :class:`StudioError` subclasses; they never import FastAPI. Unknown exceptions are logged with
their traceback and answered with a generic 500 that reveals nothing of the internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """What went wrong; extra fields carry numbers and ids (``required_gb``, ``model_id``...)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable, machine-readable: model_not_found, insufficient_memory, ...")
    message: str = Field(description="What happened and what to do next, for a person.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {"model": ErrorResponse, "description": "An error, in Orchard's one shape."}
}


class StudioError(Exception):
    """Base of every error Orchard reports to a user.

    Args:
        message: What happened and what to do next, in words a user can act on.
        **details: Extra JSON-serialisable fields added to the error body (numbers, ids).
    """

    status_code: int = 500
    code: str = "internal_error"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class InvalidRequestError(StudioError):
    status_code, code = 400, "invalid_request"


class UnauthorizedError(StudioError):
    """No API key, or the wrong one, while ORCHARD_API_KEY is set."""

    status_code, code = 401, "unauthorized"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.headers = {"WWW-Authenticate": "Bearer"}


class RemoteAccessError(StudioError):
    """A request from another machine while no API key is set."""

    status_code, code = 403, "remote_access_denied"


class PathNotAllowedError(StudioError):
    status_code, code = 403, "path_not_allowed"


class ModelNotFoundError(StudioError):
    status_code, code = 404, "model_not_found"


class RevisionNotFoundError(StudioError):
    status_code, code = 404, "revision_not_found"


class RepoNotFoundError(StudioError):
    """No such Hub repo other than a model (a dataset repo), or a private one the caller cannot see."""

    status_code, code = 404, "repo_not_found"


class RepoAccessError(StudioError):
    """Gated or private repo without access, or a bad token (401 without a token, 403 with one)."""

    code = "repo_access_denied"

    def __init__(self, message: str, *, status_code: int = 403, **details: Any) -> None:
        super().__init__(message, **details)
        self.status_code = status_code


class InvalidModelError(StudioError):
    """The files are not a model Orchard can load (no config, unsupported architecture, corrupt weights)."""

    status_code, code = 422, "invalid_model"


class InvalidDatasetError(StudioError):
    """An uploaded dataset Orchard cannot read or train on; ``errors`` locates each fault ``{line, field, message}``."""

    status_code, code = 422, "invalid_dataset"


class DatasetNotFoundError(StudioError):
    status_code, code = 404, "dataset_not_found"


class AdapterNotFoundError(StudioError):
    status_code, code = 404, "adapter_not_found"


class ExportNotFoundError(StudioError):
    status_code, code = 404, "export_not_found"


class CollectionNotFoundError(StudioError):
    status_code, code = 404, "collection_not_found"


class DocumentNotFoundError(StudioError):
    status_code, code = 404, "document_not_found"


class CollectionBusyError(StudioError):
    status_code, code = 409, "collection_busy"


class RagStoreUnavailableError(StudioError):
    """A collection's index is in PostgreSQL and that server cannot be used now (not configured, unreachable)."""

    status_code, code = 503, "rag_store_unavailable"


class EngineUnavailableError(StudioError):
    """An optional engine (llama.cpp) is asked for but not installed here; the message says how to add it."""

    status_code, code = 501, "engine_unavailable"


class UnsafeModelError(StudioError):
    """The model needs something unsafe that settings do not allow (remote code, pickle weights)."""

    status_code, code = 403, "unsafe_model"


class JobNotFoundError(StudioError):
    status_code, code = 404, "job_not_found"


class ModelBusyError(StudioError):
    status_code, code = 409, "model_busy"


class ChatTemplateMismatchError(StudioError):
    """An adapter trained with another chat template than the loaded model has (``force`` overrides)."""

    status_code, code = 409, "chat_template_mismatch"


class ModelNotLoadedError(StudioError):
    """A request needs a loaded model and there is none, or another one is loaded."""

    status_code, code = 409, "model_not_loaded"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.headers = {"x-should-retry": "false"}  # the openai clients retry 409 unless told not to


class ServerBusyError(StudioError):
    """Too much queued work: try again after ``retry_after`` seconds (503 with Retry-After)."""

    status_code, code = 503, "server_busy"

    def __init__(self, message: str, *, retry_after: int = 1, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.headers = {"Retry-After": str(retry_after)}


class ModelExistsError(StudioError):
    status_code, code = 409, "model_exists"


class PayloadTooLargeError(StudioError):
    status_code, code = 413, "payload_too_large"


class TrainingFailedError(StudioError):
    """A training or merge process failed or was killed (the job keeps its log and checkpoint)."""

    status_code, code = 500, "training_failed"


class InsufficientMemoryError(StudioError):
    status_code, code = 507, "insufficient_memory"


class InsufficientDiskError(StudioError):
    status_code, code = 507, "insufficient_disk"


class HubUnavailableError(StudioError):
    """The Hub could not be reached (502) or did not answer in time (504)."""

    code = "hub_unavailable"

    def __init__(self, message: str, *, status_code: int = 502, **details: Any) -> None:
        super().__init__(message, **details)
        self.status_code = status_code


class JobCancelled(Exception):  # a signal, not an error a user sees
    """Raised inside a job's work (or a transfer) to stop it; the job ends ``cancelled`` or ``interrupted``."""


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_busy_error",
}


def _error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, **details}
    if request.url.path.startswith("/v1/"):
        # The OpenAI-compatible API answers in OpenAI's shape, which also has our code and message.
        error = {"message": message, "type": _OPENAI_TYPES.get(status_code, "api_error"), "param": None, **error}
    return JSONResponse(jsonable_encoder({"error": error}), status_code=status_code, headers=dict(headers or {}))


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error response the one shape."""

    @app.exception_handler(StudioError)
    async def _studio_error(request: Request, exc: StudioError) -> JSONResponse:
        log = logger.error if exc.status_code == 500 else logger.warning
        log("%s %s -> %s %s: %s", request.method, request.url.path, exc.status_code, exc.code, exc.message)
        return _error_response(request, exc.status_code, exc.code, exc.message, exc.headers, **exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
        return _error_response(request, 422, "validation_error", f"{where}: {first['msg']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _error_response(request, exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unexpected error on %s %s", request.method, request.url.path)
        return _error_response(
            request, 500, "internal_error", "Unexpected server error; the details are in the server log."
        )
