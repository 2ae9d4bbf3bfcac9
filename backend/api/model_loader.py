"""The seed's ``/model`` endpoints. Handlers are thin: read input, call one service method, return a schema.

Handlers that load, download or read the Hub are plain ``def``: FastAPI runs them in its thread pool, so the
event loop keeps answering (``GET /model/health`` stays fast during a multi-second load).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status

from backend.api.deps import DownloadsDep, JobManagerDep, LoadsDep, ModelServiceDep
from backend.errors import InvalidRequestError, ModelBusyError
from backend.schemas.jobs import DownloadCheck, DownloadJob, DownloadRequest, LoadJob, LoadRequest
from backend.schemas.model import (
    DeleteResponse,
    DeviceName,
    DtypeName,
    EngineName,
    LoadResponse,
    LocalModelsResponse,
    ModelInfoResponse,
    ModelMetadata,
    UnloadResponse,
    UploadResponse,
)
from backend.schemas.system import CurrentModelResponse, ModelHealthResponse
from backend.services.model_service import process_cache
from backend.services.uploads import import_model

router = APIRouter(prefix="/model", tags=["model"])


def get_cached_model() -> dict[str, Any]:
    """The process-wide cache as the seed shows it: ``{"model", "tokenizer", "metadata"}`` (None when empty).

    ``cache = get_cached_model(); model, tokenizer = cache["model"], cache["tokenizer"]``
    """
    current = process_cache().current
    if current is None:
        return {"model": None, "tokenizer": None, "metadata": None}
    return {"model": current.model, "tokenizer": current.tokenizer, "metadata": current.metadata.model_dump()}


def _loaded(meta: ModelMetadata) -> LoadResponse:
    return LoadResponse(
        message=f"Loaded {meta.model_id} on {meta.device} as {meta.dtype} in {meta.load_seconds:.2f}s.",
        metadata=meta,
    )


@router.post(
    "/download",
    operation_id="downloadModel",
    response_model=DownloadJob,
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": DownloadJob, "description": "With wait=true: the finished job."}},
)
def download_model(
    body: DownloadRequest, downloads: DownloadsDep, jobs: JobManagerDep, response: Response
) -> DownloadJob:
    """Start downloading a model from the Hub (and, by default, load it): 202 with the job to watch.

    A second request for the same model and revision joins the running job. Before any byte is fetched the job
    checks disk and (when loading) memory, and fails with 507 and the numbers unless ``force``. With
    ``"wait": true`` the request blocks until the job ends and answers like the seed did: 200 with the finished
    job, or the job's error with its status code.
    """
    job = downloads.start(body)
    if body.wait:
        job = jobs.outcome(job)
        response.status_code = status.HTTP_200_OK
    return job


@router.post(
    "/load",
    operation_id="loadModel",
    response_model=LoadJob,
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": LoadJob, "description": "With wait=true: the finished job."}},
)
def load_model(body: LoadRequest, loads: LoadsDep, jobs: JobManagerDep, response: Response) -> LoadJob:
    """Load a local model (``model_id`` as listed by /model/local-models, or ``model_path``): 202 with a load job.

    The job's progress counts tensors as the weights load; cancelling it before the swap keeps the model loaded
    now. A missing folder is 404 and a folder outside the allowed roots 403, at once; a second load while one
    runs is 409. With ``"wait": true`` the request blocks and answers 200 with the finished job, or the job's
    error with its status code (507 when the model does not fit, unless ``force``).
    """
    job = loads.start(body)
    if body.wait:
        job = jobs.outcome(job)
        response.status_code = status.HTTP_200_OK
    return job


@router.get("/check/{model_id:path}", operation_id="checkDownload", response_model=DownloadCheck)
def check_download(
    model_id: str,
    downloads: DownloadsDep,
    access_token: Annotated[str | None, Query(description="Hub token for gated/private models.")] = None,
    revision: Annotated[str | None, Query()] = None,
    dtype: Annotated[DtypeName | None, Query()] = None,
    device: Annotated[DeviceName | None, Query()] = None,
    gguf_file: Annotated[str | None, Query(max_length=500, description="A repo of GGUF files: the file.")] = None,
) -> DownloadCheck:
    """Before downloading: bytes still to fetch (cached files not counted) vs free disk, memory needed vs free."""
    return downloads.check(
        model_id, revision=revision, access_token=access_token, dtype=dtype, device=device, gguf_file=gguf_file
    )


@router.delete("/local-models/{model_id:path}", operation_id="deleteLocalModel", response_model=DeleteResponse)
def delete_local_model(model_id: str, service: ModelServiceDep, downloads: DownloadsDep) -> DeleteResponse:
    """Delete a local model (models directory or Hub cache) and report the bytes freed; 409 if loaded/downloading."""
    if downloads.is_downloading(model_id):
        raise ModelBusyError(f"'{model_id}' is downloading; cancel the job before deleting it.", model_id=model_id)
    path, freed = service.delete_local(model_id)
    return DeleteResponse(model_id=model_id, path=str(path), freed_bytes=freed)


@router.post(
    "/upload",
    operation_id="uploadModel",
    response_model=LoadResponse | UploadResponse,
    responses={201: {"model": UploadResponse}},
)
def upload_model(
    service: ModelServiceDep,
    loads: LoadsDep,
    jobs: JobManagerDep,
    model_path: Annotated[str | None, Query(description="A model folder on the server, or a local model id.")] = None,
    files: Annotated[
        list[UploadFile] | None,
        File(description="A model's files (config, weights, tokenizer; names may include the folder) or one .zip."),
    ] = None,
    name: Annotated[str | None, Form(description="Name for the uploaded model; default: the folder's.")] = None,
    load: Annotated[bool, Query(description="Load the uploaded model once it is stored.")] = False,
    dtype: Annotated[DtypeName | None, Query()] = None,
    device: Annotated[DeviceName | None, Query()] = None,
    force: Annotated[bool, Query()] = False,
    engine: Annotated[
        EngineName | None, Query(description="transformers or llama.cpp (GGUF files); default: picked.")
    ] = None,
) -> LoadResponse | UploadResponse:
    """Load a local model folder (``model_path``), or store a model uploaded from the browser.

    With ``model_path`` (the seed's form) the folder is loaded, blocking until it is (a load job, as
    ``POST /model/load`` with ``wait``). With ``files`` the model is written under the models directory
    (size-limited, no path may escape it) and, with ``load=true``, loaded.
    """
    if model_path and files:
        raise InvalidRequestError("Send either model_path or files, not both.")
    if model_path:
        job = jobs.outcome(
            loads.start(LoadRequest(model_path=model_path, dtype=dtype, device=device, force=force, engine=engine))
        )
        assert job.result is not None
        return _loaded(job.result)
    if not files:
        raise InvalidRequestError("Pass model_path (a folder on the server) or upload the model's files.")
    path = import_model(
        service.settings.models_path,
        [(f.filename or "", f.file) for f in files],
        name=name,
        max_bytes=int(service.settings.max_upload_gb * 1e9),
    )
    loaded = None
    if load:
        loaded = service.load_local_model(
            path, dtype=dtype, device=device, force=force, engine=engine, source="upload"
        ).metadata
    return UploadResponse(model=service.local_model(path.name), loaded=loaded)


@router.get("/current", operation_id="getCurrentModel", response_model=CurrentModelResponse)
def current_model(service: ModelServiceDep, jobs: JobManagerDep) -> CurrentModelResponse:
    """The loaded model's metadata (or none), what it is doing (loading, generating), and memory now."""
    current = service.current
    loading_job = jobs.find_active("load", lambda _: True) or jobs.find_active(
        "download", lambda job: job.status == "loading"
    )
    generations = service.cache.in_use
    return CurrentModelResponse(
        loaded=current is not None,
        loading=service.cache.loading,
        loading_job=loading_job,
        generations=generations,
        activity="loading" if loading_job or service.cache.loading else "generating" if generations else "idle",
        metadata=current.metadata if current else None,
        memory=service.optimizer.memory_stats(current.metadata.device if current else None),
    )


@router.get("/local-models", operation_id="listLocalModels", response_model=LocalModelsResponse)
def local_models(service: ModelServiceDep) -> LocalModelsResponse:
    """Models in the models directory and in the Hub cache, read from their files."""
    return LocalModelsResponse(
        models=service.local_models(),
        models_dir=str(service.settings.models_path),
        hf_cache_dir=str(service.settings.hf_cache_dir),
    )


@router.get("/info/{model_id:path}", operation_id="getModelInfo", response_model=ModelInfoResponse)
def model_info(
    model_id: str,
    service: ModelServiceDep,
    access_token: Annotated[str | None, Query(description="Hub token for gated/private models.")] = None,
    revision: Annotated[str | None, Query()] = None,
    dtype: Annotated[DtypeName | None, Query()] = None,
    device: Annotated[DeviceName | None, Query()] = None,
) -> ModelInfoResponse:
    """A Hub model's config, files, parameters and memory needs, and whether it fits here; no weights fetched."""
    return service.inspect_remote(model_id, access_token, revision=revision, dtype=dtype, device=device)


@router.post("/unload", operation_id="unloadModel", response_model=UnloadResponse)
def unload_model(service: ModelServiceDep) -> UnloadResponse:
    """Drop the loaded model and give its memory back."""
    metadata, freed = service.unload()
    if metadata is None:
        return UnloadResponse(status="not_loaded", message="No model is loaded.")
    return UnloadResponse(
        status="unloaded",
        message=f"Unloaded {metadata.model_id}.",
        model_id=metadata.model_id,
        freed_gb=freed,
    )


@router.get("/health", operation_id="modelHealth", response_model=ModelHealthResponse, status_code=status.HTTP_200_OK)
async def model_health(service: ModelServiceDep) -> ModelHealthResponse:
    """Answers at once, even during a load: the loader's state without touching the model."""
    current = service.current
    device = current.metadata.device if current else service.optimizer.get_device()
    return ModelHealthResponse(
        model_loaded=current is not None,
        model_id=current.metadata.model_id if current else None,
        loading=service.cache.loading,
        device=device,
        dtype=current.metadata.dtype if current else service.optimizer.get_dtype(device),
    )
