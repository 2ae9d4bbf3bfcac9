"""Typed dependencies: handlers get their services from ``app.state`` (tests swap them via overrides)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.config import Settings
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


def get_model_service(request: Request) -> ModelService:
    service: ModelService = request.app.state.model_service
    return service


def get_job_manager(request: Request) -> JobManager:
    manager: JobManager = request.app.state.jobs
    return manager


def get_downloads(request: Request) -> DownloadKind:
    downloads: DownloadKind = request.app.state.downloads
    return downloads


def get_loads(request: Request) -> LoadKind:
    loads: LoadKind = request.app.state.loads
    return loads


def get_chat_service(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat_service
    return service


def get_dataset_service(request: Request) -> DatasetService:
    service: DatasetService = request.app.state.datasets
    return service


def get_training(request: Request) -> TrainKind:
    training: TrainKind = request.app.state.training
    return training


def get_adapters(request: Request) -> AdapterService:
    adapters: AdapterService = request.app.state.adapters
    return adapters


def get_merges(request: Request) -> MergeKind:
    merges: MergeKind = request.app.state.merges
    return merges


def get_exports(request: Request) -> ExportKind:
    exports: ExportKind = request.app.state.exports
    return exports


def get_rag(request: Request) -> RagService:
    rag: RagService = request.app.state.rag
    return rag


def get_ingest(request: Request) -> IngestKind:
    ingest: IngestKind = request.app.state.ingest
    return ingest


def get_reembed(request: Request) -> ReembedKind:
    reembed: ReembedKind = request.app.state.reembed
    return reembed


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
JobManagerDep = Annotated[JobManager, Depends(get_job_manager)]
DownloadsDep = Annotated[DownloadKind, Depends(get_downloads)]
LoadsDep = Annotated[LoadKind, Depends(get_loads)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
DatasetServiceDep = Annotated[DatasetService, Depends(get_dataset_service)]
TrainingDep = Annotated[TrainKind, Depends(get_training)]
AdaptersDep = Annotated[AdapterService, Depends(get_adapters)]
MergesDep = Annotated[MergeKind, Depends(get_merges)]
ExportsDep = Annotated[ExportKind, Depends(get_exports)]
RagDep = Annotated[RagService, Depends(get_rag)]
IngestDep = Annotated[IngestKind, Depends(get_ingest)]
ReembedDep = Annotated[ReembedKind, Depends(get_reembed)]
