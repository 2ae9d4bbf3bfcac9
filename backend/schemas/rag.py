"""Documents to ask about: collections, their documents, ingest jobs, and queries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.schemas.job_base import JobBase, JobError

SearchMode = Literal["hybrid", "vector", "keyword"]
StoreName = Literal["sqlite", "pgvector"]


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["Manuals"])
    embedding_model: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A sentence-transformers model: the bundled all-MiniLM-L6-v2 (default, works offline), a local "
        "folder, or a Hub id.",
    )
    chunk_size: int | None = Field(
        None, ge=16, le=8192, description="Tokens per chunk (the embedder's); at most what the embedder reads."
    )
    chunk_overlap: int | None = Field(None, ge=0, le=4096, description="Tokens shared by neighbouring chunks.")
    store: StoreName | None = Field(
        None,
        description="Where the chunks are indexed: sqlite (a file in the data folder) or pgvector (PostgreSQL at "
        "ORCHARD_RAG_DATABASE_URL). Default: pgvector when that is set, else sqlite.",
    )


class CollectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    embedding_model: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A new embedder: every chunk is embedded again by a `reembed` job, and the collection switches "
        "to it when that is done; until then searches and chat use the old one.",
    )


class CollectionInfo(BaseModel):
    id: str
    name: str
    embedding_model: str
    embedding_dim: int | None = Field(None, description="Known once the first document is embedded.")
    chunk_size: int
    chunk_overlap: int
    documents: int
    chunks: int
    store: str = Field(
        description="The index: sqlite-vec, numpy (SQLite where it cannot load extensions), or pgvector (PostgreSQL)."
    )
    created_at: datetime


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class DocumentInfo(BaseModel):
    id: str
    collection_id: str
    filename: str
    kind: Literal["txt", "md", "html", "pdf", "docx"]
    size_bytes: int
    sha256: str
    pages: int | None
    chunks: int
    created_at: datetime


class DocumentList(BaseModel):
    documents: list[DocumentInfo]


class DeleteDocumentResponse(BaseModel):
    document_id: str
    chunks_removed: int


class DeleteCollectionResponse(BaseModel):
    collection_id: str
    documents_removed: int
    chunks_removed: int


IngestFileStatus = Literal["waiting", "reading", "embedding", "added", "duplicate", "failed"]


class IngestFile(BaseModel):
    """One file of an ingest job: where it is (read, chunk, embed) and how it ended."""

    filename: str
    size_bytes: int
    status: IngestFileStatus = "waiting"
    document_id: str | None = Field(None, description="The document it became (or, a duplicate, already is).")
    pages: int | None = None
    chunks: int | None = None
    error: JobError | None = Field(None, description="Why it could not be ingested (the others still are).")


class IngestResult(BaseModel):
    added: int
    duplicates: int
    failed: int
    chunks: int


class IngestJob(JobBase):
    """Files read, chunked and embedded into a collection."""

    kind: Literal["ingest"]
    collection_id: str
    collection_name: str
    files: list[IngestFile]
    result: IngestResult | None = None


class ReembedResult(BaseModel):
    chunks: int
    embedding_dim: int


class ReembedJob(JobBase):
    """Every chunk of a collection embedded again with another embedder, then the collection switched to it."""

    kind: Literal["reembed"]
    collection_id: str
    collection_name: str
    embedding_model: str = Field(description="The new embedder.")
    previous_model: str
    index_key: str = Field(description="Where the new vectors are written until the switch.")
    result: ReembedResult | None = None


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(None, ge=1, le=100, description="Chunks to return; default ORCHARD_RAG_TOP_K.")
    mode: SearchMode = Field(
        "hybrid", description="hybrid (vectors and BM25, fused by reciprocal rank), vector, or keyword (BM25)."
    )


class QueryHit(BaseModel):
    rank: int
    score: float = Field(description="hybrid: the fused reciprocal-rank score; vector: cosine; keyword: BM25.")
    chunk_id: str
    document_id: str
    filename: str
    text: str
    page: int | None
    heading: str | None
    start: int = Field(description="Character offsets of the chunk in the document's text.")
    end: int


class QueryResponse(BaseModel):
    collection_id: str
    query: str
    mode: SearchMode
    hits: list[QueryHit]


class EvalPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    document_id: str | None = Field(None, max_length=100, description="The document that answers it...")
    filename: str | None = Field(None, max_length=255, description="...or its file name.")


class EvalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[EvalPair] | None = Field(
        None, max_length=1000, description="Questions with the document that answers each; default: generated."
    )
    generate: int = Field(
        50,
        ge=1,
        le=1000,
        description="Without pairs: this many, each a chunk's longest sentence with a third of "
        "its words left out, expecting that chunk's document.",
    )
    top_k: int = Field(5, ge=1, le=100)
    mode: SearchMode = "hybrid"
    seed: int = Field(0, description="For the generated pairs.")


class EvalQuestion(BaseModel):
    question: str
    document_id: str
    rank: int | None = Field(description="Where the expected document's first chunk came (1-based), or None.")


class EvalResponse(BaseModel):
    collection_id: str
    mode: SearchMode
    top_k: int
    generated: bool
    questions: int
    recall_at_k: float = Field(description="Share of questions whose document is in the top k.")
    mrr: float = Field(description="Mean reciprocal rank of the expected document (0 when not in the top k).")
    results: list[EvalQuestion]


class CollectionUpdateResponse(BaseModel):
    collection: CollectionInfo
    job: ReembedJob | None = Field(None, description="The re-embedding job, when the embedder changes (202).")
