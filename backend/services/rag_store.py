"""The chunk index behind RAG: chunk rows, BM25 keyword search and exact vector search in one SQLite file.

A ``chunks`` table holds every chunk (integer ``pk`` + the caller's text id). An external-content FTS5 table
``chunks_fts`` indexes text, heading and filename by ``pk``; triggers on ``chunks`` keep it in step, so a delete
from ``chunks`` is a delete from the keyword index in the same transaction.

Vectors live in one of two places, recorded in ``meta`` so a file is always reopened the way it was written:

* ``sqlite-vec``: one ``vec0`` table per collection (``vec_<n>``, ``n`` from the ``collections`` table, so any
  collection id is safe), created on the first add with that collection's dimension, cosine metric, rowid = pk.
  Its KNN is brute force, hence exact, and per-collection tables make the collection filter exact too.
* ``numpy``: a ``vectors`` table of float32 blobs and, per collection, a cached in-memory matrix searched with one
  matrix product; for machines whose sqlite3 cannot load extensions (stock macOS Python).

One connection shared by the API's threads, guarded by one lock; WAL so readers of the file never block on it.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]

KNN_LIMIT = 4096  # sqlite-vec refuses a KNN k above this; a larger k scans the table with vec_distance_cosine
MAX_TERMS = 64  # keyword queries keep this many distinct terms, so a pasted page cannot make a huge FTS query
ID_BATCH = 500  # ids per `IN (...)`, well under SQLite's bound-variable limit
TERM = re.compile(r"[^\W_]+(?:[-_./][^\W_]+)*")  # words, numbers and codes such as XK-42, v1.2, a/b
COLUMNS = 'id, collection_id, document_id, filename, ordinal, text, page, heading, start, "end"'

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    n INTEGER PRIMARY KEY, collection_id TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    page INTEGER,
    heading TEXT,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (collection_id, document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, heading, filename, content='chunks', content_rowid='pk', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text, heading, filename) VALUES (new.pk, new.text, new.heading, new.filename);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text, heading, filename)
    VALUES ('delete', old.pk, old.text, old.heading, old.filename);
END;
"""
NUMPY_SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (pk INTEGER PRIMARY KEY, embedding BLOB NOT NULL)"


@dataclass(frozen=True)
class StoredChunk:
    """One chunk of a document as the index keeps it; ``start``/``end`` are char offsets in the document's text."""

    id: str
    collection_id: str
    document_id: str
    filename: str
    ordinal: int
    text: str
    page: int | None
    heading: str | None
    start: int
    end: int


class ChunkStore(Protocol):
    """What RAG needs from a chunk index, whatever keeps it: :class:`SqliteStore`, or
    :class:`~backend.services.rag_pgvector.PgvectorStore`."""

    backend: str

    def dimension(self, collection_id: str) -> int | None: ...
    def add(self, chunks: Sequence[StoredChunk], vectors: np.ndarray) -> None: ...
    def delete_document(self, collection_id: str, document_id: str) -> int: ...
    def delete_collection(self, collection_id: str) -> int: ...
    def vector_search(self, collection_id: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]: ...
    def keyword_search(self, collection_id: str, query: str, k: int) -> list[tuple[str, float]]: ...
    def chunks(self, ids: Sequence[str]) -> list[StoredChunk]: ...
    def count(self, collection_id: str, document_id: str | None = None) -> int: ...
    def chunk_ids(self, collection_id: str) -> list[str]: ...
    def close(self) -> None: ...


def checked_vectors(chunks: Sequence[StoredChunk], vectors: np.ndarray) -> Matrix:
    """``vectors`` as a C-contiguous float32 [len(chunks), dim] matrix; ValueError for another shape or non-finite
    values."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(chunks) or matrix.shape[1] == 0:
        raise ValueError(f"vectors of shape {matrix.shape} for {len(chunks)} chunks")
    if not np.isfinite(matrix).all():
        raise ValueError("vectors hold NaN or infinity")
    return matrix


def vec_column(dim: int) -> str:
    """The vec0 column of a collection's vector table: ``dim`` float32s, compared by cosine distance."""
    return f"embedding float[{dim}] distance_metric=cosine"


def fts_query(text: str) -> str:
    """Any user text as a safe FTS5 query: each distinct term double-quoted (a phrase, so FTS syntax in it is
    inert and a code like ``XK-42`` matches its tokens in order), joined with OR; "" when nothing is searchable."""
    terms = dict.fromkeys(term.casefold() for term in TERM.findall(text))
    return " OR ".join(f'"{term}"' for term in list(terms)[:MAX_TERMS])


def fuse(rankings: Sequence[Sequence[str]], k: int, rrf_k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion: score(id) = sum over rankings of 1 / (rrf_k + rank), rank 1-based; best first, top k;
    ties broken by first appearance (dicts keep insertion order and the sort is stable)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])[: max(k, 0)]


def _connect(path: Path, extension: bool | None) -> tuple[sqlite3.Connection, str | None]:
    """A connection to ``path``, and why sqlite-vec is unavailable (None when it is loaded into the connection)."""
    if extension is False:
        why = "the numpy backend was asked for"
    else:
        try:
            import sqlean  # type: ignore[import-untyped]
            import sqlite_vec  # type: ignore[import-untyped]

            db: sqlite3.Connection = sqlean.connect(str(path), check_same_thread=False, isolation_level=None)
            try:
                db.enable_load_extension(True)
                sqlite_vec.load(db)
                db.enable_load_extension(False)
            except Exception:
                db.close()
                raise
            return db, None
        except Exception as error:  # ImportError, a missing or unloadable vec0 library, an old SQLite
            why = f"sqlite-vec could not be loaded: {error!r}"
            if extension:
                raise RuntimeError(why) from error
            logger.info("RAG index falls back to numpy vector search (%s)", why)
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None), why


class SqliteStore:
    """The :class:`ChunkStore` in one SQLite file.

    Args:
        path: The database file; created (with its folder) if missing.
        extension: None: sqlite-vec when sqlean and sqlite_vec import and load, else the numpy fallback;
            True: sqlite-vec or RuntimeError; False: the numpy fallback. A file reopens with the backend that wrote
            it, and RuntimeError says so when that one is not possible.
    """

    def __init__(self, path: Path, *, extension: bool | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._matrices: dict[str, tuple[list[str], Matrix]] = {}
        self._db, why = _connect(path, extension)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'backend'").fetchone()
            chosen = "numpy" if why is not None else "sqlite-vec"
            self.backend: str = row[0] if row else chosen
            if self.backend == "sqlite-vec" and why is not None:
                raise RuntimeError(f"{path} holds sqlite-vec tables, but {why}")
            if self.backend == "numpy" and extension:
                raise RuntimeError(f"{path} was written by the numpy backend, not sqlite-vec")
            if self.backend == "numpy":
                self._db.execute(NUMPY_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('backend', ?)", (self.backend,))
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one locked write transaction: committed on success, rolled back on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _collection(self, collection_id: str) -> tuple[int, int] | None:
        """The collection's table number and vector dimension, None before its first add. Call under the lock."""
        row = self._db.execute("SELECT n, dim FROM collections WHERE collection_id = ?", (collection_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def dimension(self, collection_id: str) -> int | None:
        """The collection's vector dimension; None before its first add."""
        with self._lock:
            known = self._collection(collection_id)
        return known[1] if known else None

    def add(self, chunks: Sequence[StoredChunk], vectors: np.ndarray) -> None:
        """Index ``chunks`` with their L2-normalised ``vectors`` (float32 [len(chunks), dim]) in one transaction.

        Raises:
            ValueError: the vectors' shape does not fit the chunks or a collection's dimension, or is not finite.
            sqlite3.IntegrityError (or sqlean's): a chunk id already stored; nothing is added.
        """
        if not chunks:
            return
        matrix = checked_vectors(chunks, vectors)
        dim = matrix.shape[1]
        with self._write() as db:
            first = db.execute("SELECT coalesce(max(pk), 0) + 1 FROM chunks").fetchone()[0]
            rows = [(first + i, *astuple(chunk)) for i, chunk in enumerate(chunks)]  # fields in COLUMNS order
            db.executemany(f"INSERT INTO chunks (pk, {COLUMNS}) VALUES ({', '.join('?' * 11)})", rows)
            for collection_id in dict.fromkeys(c.collection_id for c in chunks):
                vecs = [
                    (first + i, matrix[i].tobytes()) for i, c in enumerate(chunks) if c.collection_id == collection_id
                ]
                db.executemany(f"INSERT INTO {self._vector_target(collection_id, dim)} VALUES (?, ?)", vecs)
                self._matrices.pop(collection_id, None)

    def _vector_target(self, collection_id: str, dim: int) -> str:
        """Where a collection's vectors are inserted (table and columns), its vec0 table made on first use.
        Call inside a write transaction."""
        known = self._collection(collection_id)
        if known is None:
            sql = "INSERT INTO collections (collection_id, dim) VALUES (?, ?)"
            known = (int(self._db.execute(sql, (collection_id, dim)).lastrowid or 0), dim)
            if self.backend == "sqlite-vec":
                self._db.execute(f"CREATE VIRTUAL TABLE vec_{known[0]} USING vec0({vec_column(dim)})")
        if known[1] != dim:
            raise ValueError(f"collection {collection_id!r} holds {known[1]}-dim vectors, not {dim}")
        return f"vec_{known[0]} (rowid, embedding)" if self.backend == "sqlite-vec" else "vectors (pk, embedding)"

    def delete_document(self, collection_id: str, document_id: str) -> int:
        """Remove a document's chunks from the chunks, keyword and vector indexes at once; how many there were."""
        return self._delete(collection_id, "AND document_id = ?", (collection_id, document_id))

    def delete_collection(self, collection_id: str) -> int:
        """Remove every chunk of a collection and its vector table at once; how many chunks there were."""
        return self._delete(collection_id, "", (collection_id,))

    def _delete(self, collection_id: str, where: str, params: tuple[str, ...]) -> int:
        """Delete the collection's chunks matching ``where`` (the whole collection when empty) in one transaction."""
        with self._write() as db:
            pks = [(row[0],) for row in db.execute(f"SELECT pk FROM chunks WHERE collection_id = ? {where}", params)]
            known = self._collection(collection_id)
            if known is not None:
                if not where:
                    db.execute("DELETE FROM collections WHERE n = ?", (known[0],))
                if self.backend == "numpy":
                    db.executemany("DELETE FROM vectors WHERE pk = ?", pks)
                elif where:
                    db.executemany(f"DELETE FROM vec_{known[0]} WHERE rowid = ?", pks)
                else:
                    db.execute(f"DROP TABLE vec_{known[0]}")
            db.executemany("DELETE FROM chunks WHERE pk = ?", pks)  # the trigger removes the FTS rows
            self._matrices.pop(collection_id, None)
        return len(pks)

    def vector_search(self, collection_id: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The collection's ``k`` chunks nearest ``vector`` as (chunk id, cosine similarity), best first; exact."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("the query vector is zero or not finite")
        query = query / norm
        with self._lock:
            known = self._collection(collection_id)
            if known is None or k <= 0:
                return []
            if known[1] != query.size:
                raise ValueError(f"collection {collection_id!r} holds {known[1]}-dim vectors, not {query.size}")
            if self.backend == "sqlite-vec":
                if k <= KNN_LIMIT:
                    sql = f"""SELECT c.id, knn.distance FROM (SELECT rowid, distance FROM vec_{known[0]}
                        WHERE embedding MATCH ? AND k = ?) AS knn JOIN chunks c ON c.pk = knn.rowid
                        ORDER BY knn.distance"""
                else:
                    sql = f"""SELECT c.id, vec_distance_cosine(v.embedding, ?) AS distance FROM vec_{known[0]} v
                        JOIN chunks c ON c.pk = v.rowid ORDER BY distance LIMIT ?"""
                return [(row[0], 1.0 - row[1]) for row in self._db.execute(sql, (query.tobytes(), k))]
            ids, matrix = self._matrix(collection_id, known[1])
        similarities = matrix @ query  # outside the lock: the cached arrays are never written to
        top = np.argpartition(-similarities, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
        top = top[np.argsort(-similarities[top], kind="stable")]
        return [(ids[i], float(similarities[i])) for i in top]

    def _matrix(self, collection_id: str, dim: int) -> tuple[list[str], Matrix]:
        """The numpy backend's (chunk ids, vectors) for a collection, cached until it changes. Call under the lock."""
        cached = self._matrices.get(collection_id)
        if cached is None:
            rows = self._db.execute(
                "SELECT c.id, v.embedding FROM chunks c JOIN vectors v ON v.pk = c.pk WHERE c.collection_id = ?",
                (collection_id,),
            ).fetchall()
            matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dim)
            cached = self._matrices[collection_id] = ([row[0] for row in rows], matrix)
        return cached

    def keyword_search(self, collection_id: str, query: str, k: int) -> list[tuple[str, float]]:
        """BM25 over text, heading and filename as (chunk id, score, higher is better), best first; any text is safe
        (see :func:`fts_query`), and text with no searchable term finds nothing."""
        match = fts_query(query)
        if not match or k <= 0:
            return []
        sql = """SELECT c.id, bm25(chunks_fts, 1.0, 0.5, 0.5) AS rank FROM chunks_fts
            JOIN chunks c ON c.pk = chunks_fts.rowid WHERE chunks_fts MATCH ? AND c.collection_id = ?
            ORDER BY rank LIMIT ?"""
        with self._lock:
            return [(row[0], -row[1]) for row in self._db.execute(sql, (match, collection_id, k))]

    def chunks(self, ids: Sequence[str]) -> list[StoredChunk]:
        """The chunks with these ids, in the order asked; unknown ids are skipped."""
        found: dict[str, StoredChunk] = {}
        unique = list(dict.fromkeys(ids))
        with self._lock:
            for i in range(0, len(unique), ID_BATCH):
                batch = unique[i : i + ID_BATCH]
                sql = f"SELECT {COLUMNS} FROM chunks WHERE id IN ({', '.join('?' * len(batch))})"
                found.update((row[0], StoredChunk(*row)) for row in self._db.execute(sql, batch))
        return [found[chunk_id] for chunk_id in ids if chunk_id in found]

    def count(self, collection_id: str, document_id: str | None = None) -> int:
        """How many chunks the collection (or one of its documents) has."""
        sql = "SELECT count(*) FROM chunks WHERE collection_id = ?"
        params: tuple[str, ...] = (collection_id,)
        if document_id is not None:
            sql, params = sql + " AND document_id = ?", (collection_id, document_id)
        with self._lock:
            return int(self._db.execute(sql, params).fetchone()[0])

    def chunk_ids(self, collection_id: str) -> list[str]:
        """Every chunk id of the collection in the order added: document after document, each in its order."""
        sql = "SELECT id FROM chunks WHERE collection_id = ? ORDER BY pk"  # as added: documents, then chunks
        with self._lock:
            return [row[0] for row in self._db.execute(sql, (collection_id,))]

    def close(self) -> None:
        """Close the file; the store cannot be used afterwards."""
        with self._lock:
            self._matrices.clear()
            self._db.close()
