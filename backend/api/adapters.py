"""``/adapters``: the trained LoRA adapters (list, delete, merge into a new model), and ``/model/adapter``: the one
on the loaded model, which chat and ``/v1`` answer through."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from backend.api.deps import AdaptersDep, MergesDep
from backend.schemas.model import ModelMetadata
from backend.schemas.training import (
    AdapterInfo,
    AdapterList,
    AttachAdapterRequest,
    DeleteAdapterResponse,
    MergeJob,
    MergeRequest,
)

router = APIRouter(tags=["adapters"])

AdapterId = Annotated[str, Path(description="The adapter's id (its training job's id).")]


@router.get("/adapters", operation_id="listAdapters", response_model=AdapterList)
def list_adapters(adapters: AdaptersDep) -> AdapterList:
    """Trained adapters, newest first: base model, dataset, final and eval loss, size."""
    return AdapterList(adapters=adapters.list_all())


@router.get("/adapters/{adapter_id}", operation_id="getAdapter", response_model=AdapterInfo)
def get_adapter(adapter_id: AdapterId, adapters: AdaptersDep) -> AdapterInfo:
    return adapters.get(adapter_id)


@router.delete("/adapters/{adapter_id}", operation_id="deleteAdapter", response_model=DeleteAdapterResponse)
def delete_adapter(adapter_id: AdapterId, adapters: AdaptersDep) -> DeleteAdapterResponse:
    """Delete an adapter's files (409 while it is on the loaded model)."""
    return DeleteAdapterResponse(id=adapter_id, freed_bytes=adapters.delete(adapter_id))


@router.post(
    "/adapters/{adapter_id}/merge",
    operation_id="mergeAdapter",
    response_model=MergeJob,
    status_code=status.HTTP_202_ACCEPTED,
)
def merge_adapter(adapter_id: AdapterId, request: MergeRequest, merges: MergesDep) -> MergeJob:
    """Fold the adapter into its base model's weights as a new local model ``name`` (a ``merge`` job)."""
    return merges.start(adapter_id, request)


@router.post("/model/adapter", operation_id="attachAdapter", response_model=ModelMetadata)
def attach_adapter(request: AttachAdapterRequest, adapters: AdaptersDep) -> ModelMetadata:
    """Put an adapter on the loaded model; chat and /v1 answer through it. 409 when the loaded model is not its
    base, when generations are running, or when the chat template differs from the one it was trained with."""
    return adapters.attach(request.adapter_id, force=request.force)


@router.delete("/model/adapter", operation_id="detachAdapter", response_model=ModelMetadata)
def detach_adapter(adapters: AdaptersDep) -> ModelMetadata:
    """Take the adapter off the loaded model (its base weights are as before)."""
    return adapters.detach()
