"""Typed dependencies: handlers get their services from ``app.state`` (tests swap them via overrides)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.config import Settings
from backend.services.chat_service import ChatService
from backend.services.downloads import DownloadManager
from backend.services.model_service import ModelService


def get_model_service(request: Request) -> ModelService:
    service: ModelService = request.app.state.model_service
    return service


def get_download_manager(request: Request) -> DownloadManager:
    manager: DownloadManager = request.app.state.downloads
    return manager


def get_chat_service(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat_service
    return service


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
DownloadManagerDep = Annotated[DownloadManager, Depends(get_download_manager)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
