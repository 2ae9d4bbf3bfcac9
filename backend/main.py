"""The FastAPI application: ``uvicorn backend.main:app`` or ``orchard serve``."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from backend import __version__
from backend.api import adapters, chat, datasets, exports, jobs, model_loader, openai_compat, rag, system, training
from backend.api.access import require_access
from backend.api.ui import mount_ui
from backend.config import Settings, get_settings
from backend.errors import ERROR_RESPONSES, PayloadTooLargeError, install_error_handlers
from backend.services.adapters import AdapterService, MergeKind
from backend.services.chat_service import ChatService
from backend.services.dataset_tools import DatasetService
from backend.services.downloads import DownloadKind
from backend.services.exports import ExportKind
from backend.services.jobs import JobManager
from backend.services.loads import LoadKind
from backend.services.model_service import ModelService
from backend.services.rag_pipeline import IngestKind, RagService, ReembedKind
from backend.services.training import TrainKind

logger = logging.getLogger(__name__)

_TOKEN_IN_QUERY = re.compile(r"((?:access_token|token)=)[^&\s]+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Hide ``access_token=...`` query values in access logs (the seed's info endpoint takes one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


class UploadSizeLimit:
    """Refuse an upload whose declared size is over its path's limit before its body is read (413).

    Args:
        limits: ``{path: (max_bytes, "the 20.0 GB limit (ORCHARD_MAX_UPLOAD_GB)")}`` for the upload routes (POST).
    """

    def __init__(self, app: ASGIApp, limits: dict[str, tuple[int, str]]) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if limit is not None:
            max_bytes, described = limit
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                error = PayloadTooLargeError(
                    f"The upload is larger than {described}.",
                    limit_bytes=max_bytes,
                )
                from fastapi.responses import JSONResponse

                await JSONResponse(error.to_body(), status_code=error.status_code)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application. Tests pass their own ``Settings``; the server uses the environment's."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        service = ModelService(settings)
        jobs = JobManager(settings)
        datasets = DatasetService(settings, service.cache)
        adapters = AdapterService(settings, service)
        downloads, loads = DownloadKind(settings, service), LoadKind(service)
        training, merges = TrainKind(settings, service, datasets), MergeKind(settings, service, adapters)
        exports = ExportKind(settings, service, adapters)
        documents = RagService(settings)
        ingest, reembed = IngestKind(settings, documents), ReembedKind(documents)
        for kind in (downloads, loads, training, merges, exports, ingest, reembed):
            jobs.register(kind)
        app.state.model_service, app.state.jobs = service, jobs
        app.state.downloads, app.state.loads = downloads, loads
        app.state.training, app.state.merges, app.state.adapters = training, merges, adapters
        app.state.exports = exports
        app.state.rag, app.state.ingest, app.state.reembed = documents, ingest, reembed
        app.state.chat_service = chat_service = ChatService(settings, service.cache)
        app.state.datasets = datasets
        if settings.warmup:
            service.start_warmup()
        yield
        chat_service.shutdown()
        jobs.shutdown()
        documents.close()

    app = FastAPI(
        title="Orchard",
        version=__version__,
        description="A local-first LLM studio: get, load and use language models on your own machine.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    # Multipart framing adds a little; the exact limit is enforced again on the bytes written.
    framing = 1024 * 1024
    limits = {
        "/model/upload": (
            int(settings.max_upload_gb * 1e9) + framing,
            f"the {settings.max_upload_gb:.1f} GB limit (ORCHARD_MAX_UPLOAD_GB)",
        ),
        "/datasets": (
            int(settings.max_dataset_mb * 1e6) + framing,
            f"the {settings.max_dataset_mb:g} MB limit (ORCHARD_MAX_DATASET_MB)",
        ),
    }
    app.add_middleware(UploadSizeLimit, limits=limits)
    install_error_handlers(app)
    routers = (
        system.router,
        model_loader.router,
        jobs.router,
        jobs.downloads_router,
        chat.router,
        openai_compat.router,
        datasets.router,
        training.router,
        adapters.router,
        exports.router,
        rag.router,
    )
    for router in routers:
        app.include_router(router, dependencies=[Depends(require_access)])
    mount_ui(app, settings.ui_dir)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access_log.filters):
        access_log.addFilter(RedactTokens())
    return app


app = create_app()
