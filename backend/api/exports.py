"""``/export/gguf`` and ``/exports``: a model (or a fine-tune) written as one GGUF file for llama.cpp, Ollama and
LM Studio, checked against the source before the job says ``ready``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from backend.api.deps import ExportsDep
from backend.schemas.exports import ExportInfo, ExportJob, ExportList, ExportOptions, ExportRequest

router = APIRouter(tags=["exports"])

ExportId = Annotated[str, Path(description="The export's id (its job's id).")]


class DeleteExportResponse(BaseModel):
    id: str
    freed_bytes: int


@router.get("/export/gguf/options", operation_id="exportOptions", response_model=ExportOptions)
def export_options(
    exports: ExportsDep,
    model_id: Annotated[str | None, Query(max_length=300, description="Default: the loaded model.")] = None,
    adapter_id: Annotated[str | None, Query(max_length=100)] = None,
) -> ExportOptions:
    """What the model can be exported as: whether its architecture is supported, each type's expected size, which
    types need llama.cpp's quantizer, and what each type's self-check requires."""
    return exports.options(model_id, adapter_id)


@router.post("/export/gguf", operation_id="exportGguf", response_model=ExportJob, status_code=status.HTTP_202_ACCEPTED)
def export_gguf(request: ExportRequest, exports: ExportsDep) -> ExportJob:
    """Export to one GGUF file (an ``export`` job: progress by tensors written, cancel and resume through
    ``/jobs``). Before it says ``ready`` the file is read back and must tokenize like the source and give its
    logits within the type's bound; the figures are in ``result.check``. With ``adapter_id`` (or the loaded
    model's adapter) the adapter is merged first."""
    return exports.start(request)


@router.get("/exports", operation_id="listExports", response_model=ExportList)
def list_exports(exports: ExportsDep) -> ExportList:
    """Finished exports, newest first."""
    return ExportList(exports=exports.list_all())


@router.get("/exports/{export_id}", operation_id="getExport", response_model=ExportInfo)
def get_export(export_id: ExportId, exports: ExportsDep) -> ExportInfo:
    return exports.get(export_id)


@router.get(
    "/exports/{export_id}/file",
    operation_id="downloadExport",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The GGUF file."}},
)
def download_export(export_id: ExportId, exports: ExportsDep) -> FileResponse:
    """The GGUF file itself."""
    path = exports.file(export_id)
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)


@router.get(
    "/exports/{export_id}/modelfile",
    operation_id="exportModelfile",
    response_class=FileResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "The Ollama Modelfile."}},
)
def export_modelfile(export_id: ExportId, exports: ExportsDep) -> FileResponse:
    """The Ollama Modelfile: put it beside the downloaded file and run ``ollama create NAME -f Modelfile``."""
    path = exports.file(export_id).with_name("Modelfile")
    return FileResponse(path, media_type="text/plain", filename="Modelfile")


@router.delete("/exports/{export_id}", operation_id="deleteExport", response_model=DeleteExportResponse)
def delete_export(export_id: ExportId, exports: ExportsDep) -> DeleteExportResponse:
    return DeleteExportResponse(id=export_id, freed_bytes=exports.delete(export_id))
