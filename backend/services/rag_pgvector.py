"""The chunk index in PostgreSQL with pgvector, for people who outgrow one machine: the same
:class:`~backend.services.rag_store.ChunkStore` as the SQLite file, behind ``ORCHARD_RAG_DATABASE_URL``.

One table ``orchard_rag_chunks`` holds each chunk's text, its embedding (a ``vector`` column without a fixed
dimension, so collections of different embedders share it) and a generated ``tsvector`` of text (weight A),
heading and filename (weight B) with a GIN index; ``orchard_rag_collections`` records each collection's dimension.
A row is one chunk in every index at once, so a delete is a delete everywhere.

* Vector search is exact: ``ORDER BY embedding <=> q`` over the collection's rows (a sequential scan, no ANN index),
  so its top-k equals numpy's. An HNSW index would trade that for speed beyond about a million chunks.
* Keyword search is Okapi BM25 (k1 1.2, b 0.75, like SQLite's FTS5 here) computed in SQL from the ``tsvector``s:
  PostgreSQL's own ``ts_rank`` has no inverse document frequency, so a rare name or code would not outrank a common
  word, and its scores would not be on the scale the relevance bar of :mod:`backend.services.rag_pipeline` uses.
  The query's words go through the same ``english`` configuration as the chunks (stemmed, stop words dropped), and
  a code such as ``XK-42`` is matched whole as well as by its parts.

pg8000 (pure Python, BSD) talks to the server; a few connections are pooled for the API's threads.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from backend.services.rag_store import MAX_TERMS, TERM, StoredChunk, checked_vectors

POOL_SIZE = 4
BM25_K1, BM25_B = 1.2, 0.75
FIELD_WEIGHTS = {"A": 1.0, "B": 0.5}  # text; heading and filename: FTS5's bm25(chunks_fts, 1.0, 0.5, 0.5)

SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    """CREATE TABLE IF NOT EXISTS orchard_rag_collections (
        collection_id text PRIMARY KEY, dim integer NOT NULL CHECK (dim > 0)
    )""",
    """CREATE TABLE IF NOT EXISTS orchard_rag_chunks (
        pk bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        collection_id text NOT NULL REFERENCES orchard_rag_collections ON DELETE CASCADE,
        document_id text NOT NULL,
        filename text NOT NULL,
        ordinal integer NOT NULL,
        text text NOT NULL,
        page integer,
        heading text,
        start integer NOT NULL,
        "end" integer NOT NULL,
        embedding vector NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', text), 'A')
            || setweight(to_tsvector('english', coalesce(heading, '') || ' ' || filename), 'B')
        ) STORED
    )""",
    "CREATE INDEX IF NOT EXISTS orchard_rag_chunks_document ON orchard_rag_chunks (collection_id, document_id)",
    "CREATE INDEX IF NOT EXISTS orchard_rag_chunks_tsv ON orchard_rag_chunks USING gin (tsv)",
]
COLUMNS = 'id, collection_id, document_id, filename, ordinal, text, page, heading, start, "end"'

# BM25 over the collection: N and the mean length from all its rows; every chunk that has a query lexeme, with only
# those lexemes kept (ts_delete twice, in C: unnesting whole tsvectors in SQL cost 10x more); a lexeme's document
# frequency is then the number of those chunks that hold it. Score: sum(idf * tf (k1 + 1) / (tf + k1 (1 - b +
# b dl / avgdl))), where tf counts a lexeme's positions weighted by field and dl is the chunk's number of lexemes;
# idf as FTS5 computes it. stats is MATERIALIZED: a CTE used once is inlined, and planned inside the join it could
# run again for every chunk.
BM25_SQL = f"""
WITH q AS (
    SELECT array_agg(DISTINCT lexeme) AS lexemes FROM unnest(to_tsvector('english', :query)) AS t(lexeme)
), stats AS MATERIALIZED (
    SELECT count(*)::float8 AS n, coalesce(avg(length(tsv)), 1)::float8 AS avgdl
    FROM orchard_rag_chunks WHERE collection_id = :collection
), terms AS (
    SELECT c.id, length(c.tsv) AS dl, u.lexeme,
           (SELECT sum(CASE w WHEN 'A' THEN {FIELD_WEIGHTS["A"]} ELSE {FIELD_WEIGHTS["B"]} END)
            FROM unnest(u.weights) w) AS tf
    FROM orchard_rag_chunks c, q,
         unnest(ts_delete(c.tsv, tsvector_to_array(ts_delete(c.tsv, q.lexemes)))) AS u(lexeme, positions, weights)
    WHERE c.collection_id = :collection
      AND c.tsv @@ (SELECT coalesce(string_agg(quote_literal(l), ' | '), '')::tsquery FROM unnest(q.lexemes) l)
), counted AS (
    SELECT id, dl, tf, count(*) OVER (PARTITION BY lexeme) AS df FROM terms
)
SELECT id, sum(
    greatest(ln((stats.n - df + 0.5) / (df + 0.5)), 1e-6)
    * tf * {BM25_K1 + 1} / (tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * dl / stats.avgdl))
) AS score
FROM counted CROSS JOIN stats
GROUP BY id
ORDER BY score DESC, id
LIMIT :k
"""


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a float32 vector; ``repr`` of each float32 (as a double) reads back bit-exact."""
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def connection_options(url: str) -> dict[str, Any]:
    """pg8000's connection arguments from a ``postgresql://user:password@host:port/database`` URL;
    ``?sslmode=require`` encrypts without checking the certificate, ``verify-full`` checks it."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("the RAG database URL must start with postgresql://")
    options: dict[str, Any] = {
        "user": unquote(parts.username or "postgres"),
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or None,
        "password": unquote(parts.password) if parts.password else None,
        "application_name": "orchard",
        "timeout": 30,
    }
    mode = parse_qs(parts.query).get("sslmode", ["disable"])[0]
    if mode in ("require", "verify-ca", "verify-full"):
        context = ssl.create_default_context()
        if mode == "require":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl_context"] = context
    elif mode not in ("disable", "allow", "prefer"):
        raise ValueError(f"sslmode={mode} is not understood")
    return options


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}{parts.path}"
    return f"postgresql://{parts.username + '@' if parts.username else ''}{where}"


class PgvectorStore:
    """The :class:`~backend.services.rag_store.ChunkStore` in PostgreSQL with pgvector.

    Args:
        url: ``postgresql://user:password@host:port/database``; the pgvector extension must be installed on the
            server (the store creates it in the database when the user may, and its tables on first use).

    Raises:
        RuntimeError: the server cannot be reached, or pgvector is not installed there (the message says which).
    """

    backend = "pgvector"

    def __init__(self, url: str) -> None:
        import pg8000.native  # type: ignore[import-untyped]

        self._native = pg8000.native
        self._options = connection_options(url)
        self.where = describe(url)
        self._slots = threading.BoundedSemaphore(POOL_SIZE)
        self._idle: list[Any] = []
        self._pool_lock = threading.Lock()
        self._closed = False
        try:
            with self._connection() as db:
                for statement in SCHEMA:
                    db.run(statement)
        except self._native.DatabaseError as error:
            self.close()
            message = _message(error)
            if "permission denied" in message and "extension" in message:
                message += " (someone who may, such as the server's owner, runs CREATE EXTENSION vector in it once)"
            elif "vector" in message and ("extension" in message or "control file" in message):
                message += " (install pgvector on the server: package postgresql-NN-pgvector, or brew install pgvector)"
            raise RuntimeError(f"The RAG database {self.where} could not be prepared: {message}") from error

    # ------------------------------------------------------------------------------------------ connections

    def _connect(self) -> Any:
        try:
            return self._native.Connection(**self._options)
        except (OSError, self._native.InterfaceError, self._native.DatabaseError) as error:
            raise RuntimeError(f"Cannot reach the RAG database {self.where}: {_message(error)}") from error

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection of the pool (at most POOL_SIZE, opened on demand); one that broke is not kept."""
        if not self._slots.acquire(timeout=120):
            raise RuntimeError(f"The RAG database {self.where} is busy: no free connection in 2 minutes.")
        try:
            with self._pool_lock:
                if self._closed:
                    raise RuntimeError("the RAG store is closed")
                db = self._idle.pop() if self._idle else None
            if db is None:
                db = self._connect()
            try:
                yield db
            except (self._native.InterfaceError, OSError):
                _quietly_close(db)
                db = None
                raise
            finally:
                if db is not None:
                    with self._pool_lock:
                        if self._closed:
                            _quietly_close(db)
                        else:
                            self._idle.append(db)
        finally:
            self._slots.release()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._connection() as db:
            db.run("BEGIN")
            try:
                yield db
            except BaseException:
                db.run("ROLLBACK")
                raise
            db.run("COMMIT")

    # ------------------------------------------------------------------------------------------ the protocol

    def dimension(self, collection_id: str) -> int | None:
        with self._connection() as db:
            rows = db.run("SELECT dim FROM orchard_rag_collections WHERE collection_id = :c", c=collection_id)
        return int(rows[0][0]) if rows else None

    def add(self, chunks: Sequence[StoredChunk], vectors: np.ndarray) -> None:
        """Index ``chunks`` with their L2-normalised ``vectors`` in one transaction (one INSERT over arrays).

        Raises:
            ValueError: the vectors' shape does not fit the chunks or a collection's dimension, or is not finite.
            pg8000's DatabaseError: a chunk id already stored ("duplicate key ... unique constraint"); nothing added.
        """
        if not chunks:
            return
        matrix = checked_vectors(chunks, vectors)
        dim = matrix.shape[1]
        with self._transaction() as db:
            for collection_id in dict.fromkeys(c.collection_id for c in chunks):
                db.run(
                    "INSERT INTO orchard_rag_collections VALUES (:c, :dim) ON CONFLICT DO NOTHING",
                    c=collection_id,
                    dim=dim,
                )
                known = db.run("SELECT dim FROM orchard_rag_collections WHERE collection_id = :c", c=collection_id)
                if known[0][0] != dim:
                    raise ValueError(f"collection {collection_id!r} holds {known[0][0]}-dim vectors, not {dim}")
            db.run(
                f"""INSERT INTO orchard_rag_chunks ({COLUMNS}, embedding)
                SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:collections AS text[]), CAST(:documents AS text[]),
                    CAST(:filenames AS text[]), CAST(:ordinals AS integer[]), CAST(:texts AS text[]),
                    CAST(:pages AS integer[]), CAST(:headings AS text[]), CAST(:starts AS integer[]),
                    CAST(:ends AS integer[]), CAST(:vectors AS text[])::vector[])""",
                ids=[c.id for c in chunks],
                collections=[c.collection_id for c in chunks],
                documents=[c.document_id for c in chunks],
                filenames=[_text(c.filename) for c in chunks],
                ordinals=[c.ordinal for c in chunks],
                texts=[_text(c.text) for c in chunks],
                pages=[c.page for c in chunks],
                headings=[None if c.heading is None else _text(c.heading) for c in chunks],
                starts=[c.start for c in chunks],
                ends=[c.end for c in chunks],
                vectors=[vector_literal(row) for row in matrix],
            )

    def delete_document(self, collection_id: str, document_id: str) -> int:
        """Remove a document's chunks (text, vector and keyword index are one row); how many there were."""
        with self._transaction() as db:
            db.run(
                "DELETE FROM orchard_rag_chunks WHERE collection_id = :c AND document_id = :d",
                c=collection_id,
                d=document_id,
            )
            return int(db.row_count)

    def delete_collection(self, collection_id: str) -> int:
        """Remove every chunk of a collection, and its dimension; how many chunks there were."""
        with self._transaction() as db:
            rows = db.run("SELECT count(*) FROM orchard_rag_chunks WHERE collection_id = :c", c=collection_id)
            db.run("DELETE FROM orchard_rag_collections WHERE collection_id = :c", c=collection_id)  # cascades
            return int(rows[0][0])

    def vector_search(self, collection_id: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The collection's ``k`` chunks nearest ``vector`` as (chunk id, cosine similarity), best first; exact."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("the query vector is zero or not finite")
        dim = self.dimension(collection_id)
        if dim is None or k <= 0:
            return []
        if dim != query.size:
            raise ValueError(f"collection {collection_id!r} holds {dim}-dim vectors, not {query.size}")
        with self._connection() as db:
            rows = db.run(
                """SELECT id, embedding <=> CAST(:q AS vector) AS distance FROM orchard_rag_chunks
                WHERE collection_id = :c ORDER BY distance, pk LIMIT :k""",
                q=vector_literal(query / norm),
                c=collection_id,
                k=k,
            )
        return [(row[0], 1.0 - float(row[1])) for row in rows]

    def keyword_search(self, collection_id: str, query: str, k: int) -> list[tuple[str, float]]:
        """BM25 over text, heading and filename as (chunk id, score, higher is better), best first; any text is safe
        (it is only ever a parameter of ``to_tsvector``), and text with no searchable word finds nothing."""
        terms = list(dict.fromkeys(term.casefold() for term in TERM.findall(query)))[:MAX_TERMS]
        if not terms or k <= 0:
            return []
        with self._connection() as db:
            rows = db.run(BM25_SQL, query=" ".join(terms), collection=collection_id, k=k)
        return [(row[0], float(row[1])) for row in rows]

    def chunks(self, ids: Sequence[str]) -> list[StoredChunk]:
        """The chunks with these ids, in the order asked; unknown ids are skipped."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        with self._connection() as db:
            rows = db.run(f"SELECT {COLUMNS} FROM orchard_rag_chunks WHERE id = ANY(CAST(:ids AS text[]))", ids=unique)
        found = {row[0]: StoredChunk(*row) for row in rows}
        return [found[chunk_id] for chunk_id in ids if chunk_id in found]

    def count(self, collection_id: str, document_id: str | None = None) -> int:
        """How many chunks the collection (or one of its documents) has."""
        sql = "SELECT count(*) FROM orchard_rag_chunks WHERE collection_id = :c"
        params: dict[str, str] = {"c": collection_id}
        if document_id is not None:
            sql += " AND document_id = :d"
            params["d"] = document_id
        with self._connection() as db:
            return int(db.run(sql, **params)[0][0])

    def chunk_ids(self, collection_id: str) -> list[str]:
        """Every chunk id of the collection in the order added: document after document, each in its order."""
        with self._connection() as db:
            rows = db.run("SELECT id FROM orchard_rag_chunks WHERE collection_id = :c ORDER BY pk", c=collection_id)
        return [row[0] for row in rows]

    def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            _quietly_close(db)


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters; a document's stray ones become spaces."""
    return value.replace("\x00", " ")


def _message(error: BaseException) -> str:
    """A driver error's human message (pg8000 puts the server's fields in a dict)."""
    detail = error.args[0] if error.args else error
    if isinstance(detail, dict):
        return str(detail.get("M", detail))
    return str(detail)


def _quietly_close(db: Any) -> None:
    with contextlib.suppress(Exception):  # a dead connection: nothing more to do with it
        db.close()
