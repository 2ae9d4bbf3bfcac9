"""``/datasets``: import a fine-tuning dataset (an upload, or a Hub dataset repo), check it (statistics, trained-span
preview), delete it.

Handlers are plain ``def``: reading files and tokenizing rows runs in FastAPI's thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile, status

from backend.api.deps import DatasetServiceDep
from backend.schemas.datasets import (
    DatasetDetail,
    DatasetInfo,
    DatasetList,
    DatasetPreview,
    DeleteDatasetResponse,
    HubDatasetRequest,
)
from backend.services.dataset_hub import import_from_hub

router = APIRouter(prefix="/datasets", tags=["datasets"])

DatasetId = Annotated[str, Path(description="The dataset's id, as POST /datasets returned it.")]


@router.post("", operation_id="uploadDataset", response_model=DatasetInfo, status_code=status.HTTP_201_CREATED)
def upload_dataset(
    datasets: DatasetServiceDep,
    file: Annotated[UploadFile, File(description="A .jsonl, .json (a list of rows), .csv or .parquet file.")],
    name: Annotated[str | None, Form(description="Name to show; default: the file's name.")] = None,
) -> DatasetInfo:
    """Import a dataset: chat (messages), ShareGPT (conversations), instruction/input/output, prompt/completion or text.

    Every row is checked before anything is stored; a file with faulty rows gets 422 ``invalid_dataset`` with
    ``errors: [{line, field, message}]`` (the first twenty) and ``error_count``, and nothing is kept.
    """
    return datasets.create(file.file, file.filename or "dataset", name)


@router.post(
    "/from-hub", operation_id="importHubDataset", response_model=DatasetInfo, status_code=status.HTTP_201_CREATED
)
def import_hub_dataset(body: HubDatasetRequest, datasets: DatasetServiceDep) -> DatasetInfo:
    """Import a dataset repo from the Hugging Face Hub: the files of one split (or one `file`), checked like an upload.

    Without `file`, the repo's .jsonl/.json/.csv/.parquet files whose path names `split` are read, shards
    concatenated (or its only data file); several candidates give 400 ``invalid_request`` with ``candidates``.
    Files over ORCHARD_MAX_DATASET_MB together are refused (413) before any is fetched; faulty rows give 422
    ``invalid_dataset`` with ``errors: [{line, field, message, file}]``, and nothing is stored. A missing (or, without
    a token, private) repo is 404 ``repo_not_found``; a gated one 401/403; an unreachable Hub 502/504.

    This call blocks until the files are fetched and checked (it runs in the thread pool, not as a job): fine for
    datasets up to the size limit.
    """
    token = body.access_token.get_secret_value() if body.access_token else None
    return import_from_hub(
        datasets,
        body.repo_id,
        revision=body.revision,
        file=body.file,
        split=body.split,
        name=body.name,
        access_token=token,
    )


@router.get("", operation_id="listDatasets", response_model=DatasetList)
def list_datasets(datasets: DatasetServiceDep) -> DatasetList:
    """Stored datasets, newest first."""
    return DatasetList(datasets=datasets.list_all())


@router.get("/{dataset_id}", operation_id="getDataset", response_model=DatasetDetail)
def get_dataset(
    dataset_id: DatasetId,
    datasets: DatasetServiceDep,
    max_seq_length: Annotated[
        int | None, Query(ge=1, le=1_048_576, description="Default: ORCHARD_TRAIN_MAX_SEQ_LENGTH.")
    ] = None,
    bins: Annotated[int, Query(ge=1, le=100, description="Bins of the token-length histogram.")] = 10,
) -> DatasetDetail:
    """The dataset with statistics: characters, duplicates, rows with nothing to train on, and, with a model
    loaded, token lengths through its chat template (histogram, rows over max_seq_length, which are dropped)."""
    return datasets.detail(dataset_id, max_seq_length=max_seq_length, bins=bins)


@router.get("/{dataset_id}/preview", operation_id="previewDataset", response_model=DatasetPreview)
def preview_dataset(
    dataset_id: DatasetId,
    datasets: DatasetServiceDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> DatasetPreview:
    """Rows rendered through the loaded model's chat template, cut into trained (assistant) and context segments.

    409 ``model_not_loaded`` without a model: the template and tokenizer are the model's.
    """
    return datasets.preview(dataset_id, offset=offset, limit=limit)


@router.delete("/{dataset_id}", operation_id="deleteDataset", response_model=DeleteDatasetResponse)
def delete_dataset(dataset_id: DatasetId, datasets: DatasetServiceDep) -> DeleteDatasetResponse:
    """Delete a dataset's files."""
    return DeleteDatasetResponse(id=dataset_id, freed_bytes=datasets.delete(dataset_id))
