"""``/rag``: collections of documents to ask about, their ingest jobs, and retrieval."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Response, UploadFile, status

from backend.api.deps import IngestDep, JobManagerDep, RagDep, ReembedDep
from backend.schemas.rag import (
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    CollectionUpdate,
    CollectionUpdateResponse,
    DeleteCollectionResponse,
    DeleteDocumentResponse,
    DocumentList,
    EvalRequest,
    EvalResponse,
    IngestJob,
    QueryRequest,
    QueryResponse,
)
from backend.services.rag_pipeline import busy_collection

router = APIRouter(prefix="/rag", tags=["rag"])

CollectionId = Annotated[str, Path(max_length=100, description="The collection's id.")]
DocumentId = Annotated[str, Path(max_length=100, description="The document's id.")]


@router.post("/collections", operation_id="createCollection", response_model=CollectionInfo, status_code=201)
def create_collection(body: CollectionCreate, rag: RagDep) -> CollectionInfo:
    """A new, empty collection with its embedder and chunking (tokens of the embedder's tokenizer)."""
    return rag.create(body)


@router.get("/collections", operation_id="listCollections", response_model=CollectionList)
def list_collections(rag: RagDep) -> CollectionList:
    return CollectionList(collections=rag.collections())


@router.get("/collections/{collection_id}", operation_id="getCollection", response_model=CollectionInfo)
def get_collection(collection_id: CollectionId, rag: RagDep) -> CollectionInfo:
    return rag.info(collection_id)


@router.delete("/collections/{collection_id}", operation_id="deleteCollection", response_model=DeleteCollectionResponse)
def delete_collection(collection_id: CollectionId, rag: RagDep, jobs: JobManagerDep) -> DeleteCollectionResponse:
    """Remove the collection, its documents and every chunk; 409 while files are being added to it or it is being
    re-embedded."""
    busy_collection(jobs, collection_id)
    documents, chunks = rag.delete(collection_id)
    return DeleteCollectionResponse(collection_id=collection_id, documents_removed=documents, chunks_removed=chunks)


@router.patch(
    "/collections/{collection_id}",
    operation_id="updateCollection",
    response_model=CollectionUpdateResponse,
    responses={202: {"model": CollectionUpdateResponse, "description": "The embedder changes: a reembed job."}},
)
def update_collection(
    collection_id: CollectionId, body: CollectionUpdate, rag: RagDep, reembed: ReembedDep, response: Response
) -> CollectionUpdateResponse:
    """Rename the collection, or change its embedder: a ``reembed`` job embeds every chunk again into a new index
    and switches the collection to it when done (202 with the job). Until then searches and chat use the old
    embedder; a cancel or a failure leaves the collection as it was. 409 while files are being added."""
    if body.name is not None:
        rag.rename(collection_id, body.name)
    job = None
    if body.embedding_model is not None:
        job = reembed.start(collection_id, body.embedding_model)
        response.status_code = status.HTTP_202_ACCEPTED
    return CollectionUpdateResponse(collection=rag.info(collection_id), job=job)


@router.post(
    "/collections/{collection_id}/documents",
    operation_id="addDocuments",
    response_model=IngestJob,
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": IngestJob, "description": "With wait=true: the finished job."}},
)
def add_documents(
    collection_id: CollectionId,
    ingest: IngestDep,
    jobs: JobManagerDep,
    response: Response,
    files: Annotated[list[UploadFile], File(description="Documents: .txt, .md, .html, .pdf, .docx.")],
    wait: Annotated[bool, Query(description="Block until the job ends and return it.")] = False,
) -> IngestJob:
    """An ``ingest`` job: each file read (PDF pages, HTML without scripts or navigation, Markdown headings), chunked
    with the embedder's tokenizer, embedded, and added with all its chunks at once. A file that cannot be read is
    reported by name in ``files`` and the others are still added; the same content again adds nothing."""
    job = ingest.start(collection_id, [(f.filename or "", f.file) for f in files])
    if wait:
        job = jobs.outcome(job)
        response.status_code = status.HTTP_200_OK
    return job


@router.get("/collections/{collection_id}/documents", operation_id="listDocuments", response_model=DocumentList)
def list_documents(collection_id: CollectionId, rag: RagDep) -> DocumentList:
    return DocumentList(documents=rag.documents(collection_id))


@router.delete(
    "/collections/{collection_id}/documents/{document_id}",
    operation_id="deleteDocument",
    response_model=DeleteDocumentResponse,
)
def delete_document(collection_id: CollectionId, document_id: DocumentId, rag: RagDep) -> DeleteDocumentResponse:
    """Remove a document and every chunk of it, at once: it is never retrieved again."""
    return DeleteDocumentResponse(
        document_id=document_id, chunks_removed=rag.delete_document(collection_id, document_id)
    )


@router.post("/collections/{collection_id}/query", operation_id="queryCollection", response_model=QueryResponse)
def query_collection(collection_id: CollectionId, body: QueryRequest, rag: RagDep) -> QueryResponse:
    """The chunks that answer ``query`` best, ranked, with their document, page and offsets."""
    return rag.query(collection_id, body)


@router.post("/collections/{collection_id}/eval", operation_id="evaluateCollection", response_model=EvalResponse)
def evaluate_collection(collection_id: CollectionId, body: EvalRequest, rag: RagDep) -> EvalResponse:
    """Recall@k and MRR on question -> document pairs (``pairs``, or generated from the collection's own chunks), so
    a change of chunking, embedder or mode is measured."""
    return rag.evaluate(collection_id, body)
