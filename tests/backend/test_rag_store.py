"""The RAG chunk index on every backend (sqlite-vec, the numpy fallback, PostgreSQL with pgvector on a real server
the tests start): exact vector search, BM25 with hostile input, deletes, atomic adds, fusion."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from backend.services.rag_pgvector import PgvectorStore, connection_options, describe
from backend.services.rag_store import ChunkStore, SqliteStore, StoredChunk, fts_query, fuse
from tests import postgres

DIM = 384


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """``n`` random L2-normalised float32 vectors."""
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_chunks(collection: str, document: str, texts: list[str], filename: str = "notes.txt") -> list[StoredChunk]:
    """One chunk per text, in order, with made-up offsets."""
    return [
        StoredChunk(
            id=uuid.uuid4().hex,
            collection_id=collection,
            document_id=document,
            filename=filename,
            ordinal=i,
            text=text,
            page=i + 1 if i % 2 else None,
            heading=f"Section {i}" if i % 3 else None,
            start=i * 100,
            end=i * 100 + len(text),
        )
        for i, text in enumerate(texts)
    ]


def index_rows(store: ChunkStore, collection: str) -> tuple[int, int]:
    """(rows in the keyword index, vector rows) behind a collection, read from the tables themselves."""
    if isinstance(store, PgvectorStore):  # one row holds a chunk's text, tsvector and vector
        with store._connection() as db:
            sql = "SELECT count(tsv), count(embedding) FROM orchard_rag_chunks WHERE collection_id = :c"
            fts, vectors = db.run(sql, c=collection)[0]
        return int(fts), int(vectors)
    assert isinstance(store, SqliteStore)
    db = store._db
    fts = db.execute(
        "SELECT count(*) FROM chunks_fts_docsize d JOIN chunks c ON c.pk = d.id WHERE c.collection_id = ?",
        (collection,),
    ).fetchone()[0]
    orphans = db.execute("SELECT count(*) FROM chunks_fts_docsize WHERE id NOT IN (SELECT pk FROM chunks)").fetchone()
    assert orphans[0] == 0
    known = store._collection(collection)
    if known is None:
        return fts, 0
    if store.backend == "sqlite-vec":
        return fts, db.execute(f"SELECT count(*) FROM vec_{known[0]}").fetchone()[0]
    sql = "SELECT count(*) FROM vectors v JOIN chunks c ON c.pk = v.pk WHERE c.collection_id = ?"
    assert db.execute("SELECT count(*) FROM vectors WHERE pk NOT IN (SELECT pk FROM chunks)").fetchone()[0] == 0
    return fts, db.execute(sql, (collection,)).fetchone()[0]


def raw_keyword_matches(store: ChunkStore, word: str) -> int:
    """Rows of the keyword index itself (not a join) that match ``word``, in every collection."""
    if isinstance(store, PgvectorStore):
        with store._connection() as db:
            sql = "SELECT count(*) FROM orchard_rag_chunks WHERE tsv @@ plainto_tsquery('english', :w)"
            return int(db.run(sql, w=word)[0][0])
    assert isinstance(store, SqliteStore)
    return int(store._db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (word,)).fetchone()[0])


Opener = Callable[[], ChunkStore]


@pytest.fixture(params=["sqlite-vec", "numpy", "pgvector"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the store under test; each call opens the same one again (a restart)."""
    if request.param == "pgvector":
        url = request.getfixturevalue("pg_database")
        return lambda: PgvectorStore(url)
    path, extension = tmp_path / "rag.db", request.param == "sqlite-vec"
    return lambda: SqliteStore(path, extension=extension)


@pytest.fixture
def store(opener: Opener) -> Iterator[ChunkStore]:
    """A fresh store on the backend under test."""
    opened = opener()
    yield opened
    opened.close()


def test_backends(tmp_path: Path) -> None:
    """sqlite-vec really loads here; False forces numpy; None picks sqlite-vec when it can."""
    vec = SqliteStore(tmp_path / "vec.db", extension=True)
    fallback = SqliteStore(tmp_path / "np.db", extension=False)
    auto = SqliteStore(tmp_path / "auto.db")
    try:
        print(f"backends: extension=True -> {vec.backend}, False -> {fallback.backend}, None -> {auto.backend}")
        assert (vec.backend, fallback.backend, auto.backend) == ("sqlite-vec", "numpy", "sqlite-vec")
        assert vec._db.execute("SELECT vec_version()").fetchone()[0].startswith("v")
    finally:
        for opened in (vec, fallback, auto):
            opened.close()


def test_reopen_needs_the_backend_that_wrote_the_file(tmp_path: Path) -> None:
    """A file keeps its backend: the other one is refused with a reason, never silently half-working."""
    rng = np.random.default_rng(1)
    for extension, other in ((True, False), (False, True)):
        path = tmp_path / f"{extension}.db"
        store = SqliteStore(path, extension=extension)
        store.add(make_chunks("a", "d", ["hello"]), unit(rng, 1, 8))
        store.close()
        with pytest.raises(RuntimeError):
            SqliteStore(path, extension=other)
        reopened = SqliteStore(path)  # None follows the file
        assert reopened.backend == ("sqlite-vec" if extension else "numpy")
        assert reopened.count("a") == 1
        reopened.close()


def test_vector_search_is_exact_and_per_collection(store: ChunkStore) -> None:
    """Top-10 ids equal numpy's exact search over collection A only; similarities match to 1e-5."""
    rng = np.random.default_rng(42)
    vectors_a, vectors_b = unit(rng, 2000), unit(rng, 500)
    chunks_a = make_chunks("A", "doc-a", [f"a {i}" for i in range(2000)])
    chunks_b = make_chunks("B", "doc-b", [f"b {i}" for i in range(500)])
    for start in range(0, 2000, 700):  # several batches, interleaved with B
        store.add(chunks_a[start : start + 700], vectors_a[start : start + 700])
        if start == 0:
            store.add(chunks_b, vectors_b)
    ids_a = np.array([c.id for c in chunks_a])
    for query in unit(rng, 20):
        expected = np.argsort(-(vectors_a @ query), kind="stable")[:10]
        found = store.vector_search("A", query, 10)
        assert [chunk_id for chunk_id, _ in found] == list(ids_a[expected])
        np.testing.assert_allclose([s for _, s in found], vectors_a[expected] @ query, atol=1e-5)
    query = vectors_b[7]
    assert store.vector_search("B", query, 1)[0][0] == chunks_b[7].id
    assert store.vector_search("B", query, 1)[0][1] == pytest.approx(1.0, abs=1e-5)
    everything = store.vector_search("B", query, 10_000)  # past sqlite-vec's KNN limit: the scan path
    assert len(everything) == 500 and {i for i, _ in everything} == {c.id for c in chunks_b}
    assert [s for _, s in everything] == sorted((s for _, s in everything), reverse=True)
    assert len(store.vector_search("A", query, 2500)) == 2000
    assert store.vector_search("missing", query, 5) == [] and store.vector_search("A", query, 0) == []
    with pytest.raises(ValueError):
        store.vector_search("A", query[:100], 5)


KEYWORD_TEXTS = [
    "The Zorblat-7 reactor must be vented before maintenance.",
    "The Zorblat-8 reactor is vented weekly.",
    "A reactor needs coolant; the Zorblat line has seven models.",
    "Part XK-42 is the coolant valve.",
    "Part XK-41 replaces the older valve, see XK 43.",
    "Maintenance schedules for every reactor model.",
    *[f"Routine note {i}: the reactor and valve were inspected." for i in range(40)],
]


def test_keyword_search_finds_exact_names_and_codes(store: ChunkStore) -> None:
    """Names and codes win over near-misses; only the asked collection is searched; scores are best first."""
    chunks = make_chunks("c", "manual", KEYWORD_TEXTS, filename="manual.pdf")
    store.add(chunks, unit(np.random.default_rng(3), len(chunks), 16))
    store.add(make_chunks("other", "x", ["Zorblat-7 reactor XK-42"]), unit(np.random.default_rng(4), 1, 16))
    found = store.keyword_search("c", "Zorblat-7 reactor", 5)
    assert found[0][0] == chunks[0].id
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert store.keyword_search("c", "what is part XK-42?", 3)[0][0] == chunks[3].id
    assert store.keyword_search("c", "xk-41", 1)[0][0] == chunks[4].id
    assert {i for i, _ in store.keyword_search("c", "Zorblat-7 XK-42", 100)} <= {c.id for c in chunks}
    assert len(store.keyword_search("c", "reactor", 1000)) == 44  # k past the matches returns them all
    assert store.keyword_search("c", "manual.pdf", 1)  # the filename is indexed too


@pytest.mark.parametrize(
    "query",
    ['"', '"unbalanced', "AND OR NOT", "reactor AND", "NOT", "*", "react*", "(reactor", ")) ((", "col:reactor",
     "text:valve", "NEAR(a b)", "^reactor", "🔥🧪", "", "   ", "'; DROP TABLE chunks; --", "a" * 5000,
     " ".join(f"w{i}" for i in range(500)), "\x00", "- + : ."],
)  # fmt: skip
def test_hostile_keyword_queries(store: ChunkStore, query: str) -> None:
    """Any text is a safe query: never raises, always a list; nothing searchable finds nothing."""
    store.add(make_chunks("c", "d", KEYWORD_TEXTS[:6]), unit(np.random.default_rng(5), 6, 8))
    found = store.keyword_search("c", query, 5)
    assert isinstance(found, list)
    if not fts_query(query):
        assert found == []
    assert store.count("c") == 6


def test_fts_query_quotes_terms() -> None:
    """Terms are quoted phrases joined with OR, deduplicated; codes stay whole; no term gives ""."""
    assert fts_query('Zorblat-7 "reactor" AND zorblat-7 col:x') == '"zorblat-7" OR "reactor" OR "and" OR "col" OR "x"'
    assert fts_query("v1.2 a_b 42") == '"v1.2" OR "a_b" OR "42"'
    assert fts_query("  * () 🔥 \" ' ") == ""


def test_delete_document_removes_it_from_every_index(store: ChunkStore) -> None:
    """Chunks, FTS rows and vectors of one document go; its siblings and other collections stay."""
    rng = np.random.default_rng(6)
    gone = make_chunks("c", "gone", [f"Quarkle unique text {i}" for i in range(30)])
    kept = make_chunks("c", "kept", [f"ordinary text {i}" for i in range(20)])
    elsewhere = make_chunks("d", "gone", ["Quarkle in another collection"])
    vectors = unit(rng, 51)
    store.add(gone + kept, vectors[:50])
    store.add(elsewhere, vectors[50:])
    assert index_rows(store, "c") == (50, 50)
    assert store.delete_document("c", "gone") == 30
    assert store.count("c", "gone") == 0 and store.count("c", "kept") == 20 and store.count("c") == 20
    assert index_rows(store, "c") == (20, 20)
    assert store.keyword_search("c", "Quarkle", 10) == []
    assert [i for i, _ in store.keyword_search("d", "Quarkle", 10)] == [elsewhere[0].id]
    assert raw_keyword_matches(store, "quarkle") == 1  # the index itself, not just a join, lost the rows
    found = {i for i, _ in store.vector_search("c", vectors[0], 100)}
    assert found == {c.id for c in kept}
    assert store.chunks([c.id for c in gone]) == []
    assert store.delete_document("c", "gone") == 0


def test_delete_collection_removes_only_that_collection(store: ChunkStore) -> None:
    """Everything of the collection goes; another collection is untouched; the id can be reused with a new dim."""
    rng = np.random.default_rng(7)
    mine = make_chunks("mine", "d1", ["alpha one", "alpha two"]) + make_chunks("mine", "d2", ["alpha three"])
    theirs = make_chunks("theirs", "d1", ["alpha four"])
    store.add(mine, unit(rng, 3))
    store.add(theirs, unit(rng, 1))
    assert store.delete_collection("mine") == 3
    assert store.count("mine") == 0 and store.count("theirs") == 1
    assert index_rows(store, "mine") == (0, 0) and index_rows(store, "theirs") == (1, 1)
    assert store.keyword_search("mine", "alpha", 10) == [] and store.vector_search("mine", unit(rng, 1)[0], 5) == []
    assert [i for i, _ in store.keyword_search("theirs", "alpha", 10)] == [theirs[0].id]
    store.add(make_chunks("mine", "d3", ["beta"]), unit(rng, 1, 32))
    assert store.vector_search("mine", unit(rng, 1, 32)[0], 5)[0][0] == store.keyword_search("mine", "beta", 1)[0][0]
    assert store.delete_collection("never") == 0


def test_add_is_all_or_nothing(store: ChunkStore) -> None:
    """A bad shape, a dimension change or a duplicate id mid-batch raises and leaves nothing behind."""
    rng = np.random.default_rng(8)
    chunks = make_chunks("c", "d", [f"text {i}" for i in range(10)])
    for bad in (unit(rng, 9), unit(rng, 10)[:, :0], unit(rng, 10)[None], np.full((10, DIM), np.nan, np.float32)):
        with pytest.raises(ValueError):
            store.add(chunks, bad)
    assert store.count("c") == 0 and store.dimension("c") is None
    duplicate = [*chunks, chunks[3]]
    with pytest.raises(Exception, match=r"(?i)unique"):
        store.add(duplicate, unit(rng, 11))
    assert store.count("c") == 0 and store.dimension("c") is None and index_rows(store, "c") == (0, 0)
    store.add(chunks, unit(rng, 10, 16))  # the failed add did not fix the collection's dimension
    more = make_chunks("c", "e", ["later"])
    with pytest.raises(ValueError, match="16-dim"):
        store.add(more, unit(rng, 1))
    assert store.count("c") == 10 and index_rows(store, "c") == (10, 10)
    fresh = make_chunks("new", "d", ["fresh"])  # its vector table is made, then the batch fails on "c"
    with pytest.raises(ValueError):
        store.add(fresh + more, unit(rng, 2))
    assert store.count("new") == 0 and store.dimension("new") is None and store.count("c") == 10
    if isinstance(store, SqliteStore):
        vec_tables = store._db.execute("SELECT count(*) FROM sqlite_master WHERE sql LIKE '%USING vec0%'").fetchone()
        assert vec_tables[0] == (1 if store.backend == "sqlite-vec" else 0)  # only "c"'s: the new one rolled back
    store.add(fresh, unit(rng, 1, 8))
    assert store.vector_search("new", unit(rng, 1, 8)[0], 3)[0][0] == fresh[0].id
    store.add([], np.empty((0, 0), np.float32))
    assert store.count("c") == 10


def test_chunks_order_and_persistence(opener: Opener) -> None:
    """chunks() keeps the asked order and skips unknown ids; everything is there after reopening the store."""
    rng = np.random.default_rng(9)
    chunks = make_chunks("c", "d", [f"persistent text {i}" for i in range(1200)])  # past one IN (...) batch
    vectors = unit(rng, 1200)
    store = opener()
    store.add(chunks, vectors)
    asked = [chunks[5].id, "nope", chunks[1100].id, chunks[0].id, chunks[5].id]
    assert store.chunks(asked) == [chunks[5], chunks[1100], chunks[0], chunks[5]]
    assert store.chunks([c.id for c in reversed(chunks)]) == chunks[::-1]
    assert store.chunks([]) == []
    backend = store.backend
    store.close()
    reopened = opener()
    try:
        assert reopened.backend == backend
        assert reopened.count("c") == 1200 and reopened.count("c", "d") == 1200
        assert reopened.chunks([chunks[7].id]) == [chunks[7]]
        assert reopened.vector_search("c", vectors[7], 1)[0][0] == chunks[7].id
        assert reopened.keyword_search("c", "persistent", 3)
        assert reopened.chunk_ids("c") == [c.id for c in chunks]
    finally:
        reopened.close()


def test_fuse() -> None:
    """Reciprocal-rank fusion by hand, first-appearance tie-breaks, and k."""
    fused = fuse([["a", "b", "c"], ["c", "a", "d"]], k=10, rrf_k=60)
    expected = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 63}
    assert [i for i, _ in fused] == ["a", "c", "b", "d"]
    for chunk_id, score in fused:
        assert score == pytest.approx(expected[chunk_id])
    assert [i for i, _ in fuse([["x", "y"], ["y", "x"]], k=2)] == ["x", "y"]  # a tie: first seen first
    assert [i for i, _ in fuse([["p"], ["q"], ["r"]], k=5)] == ["p", "q", "r"]
    assert fuse([["a", "b", "c"], ["c", "a", "d"]], k=2) == fused[:2]
    assert fuse([["a"]], k=0) == [] and fuse([], k=3) == []
    assert fuse([["a", "b"]], k=3, rrf_k=0) == [("a", 1.0), ("b", 0.5)]


def test_concurrent_searches_while_adding(store: ChunkStore) -> None:
    """Four threads search (vector, keyword, chunks, count) while one adds batches; no exceptions."""
    rng = np.random.default_rng(10)
    store.add(make_chunks("c", "seed", ["seed reactor text"]), unit(rng, 1, 64))
    queries = unit(rng, 8, 64)
    errors: list[BaseException] = []
    done = threading.Event()

    def search(seed: int) -> None:
        try:
            i = seed
            while not done.is_set():
                hits = store.vector_search("c", queries[i % 8], 5)
                store.chunks([chunk_id for chunk_id, _ in hits])
                store.keyword_search("c", f"reactor batch{i % 5}", 5)
                store.count("c")
                i += 1
        except BaseException as error:
            errors.append(error)

    def add() -> None:
        try:
            for batch in range(30):
                texts = [f"batch{batch % 5} reactor line {j}" for j in range(20)]
                store.add(make_chunks("c", f"doc{batch}", texts), unit(rng, 20, 64))
                if batch % 10 == 9:
                    store.delete_document("c", f"doc{batch - 5}")
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    threads = [threading.Thread(target=search, args=(n,)) for n in range(4)] + [threading.Thread(target=add)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert store.count("c") == 1 + 30 * 20 - 3 * 20


def test_pgvector_text_round_trips(store: ChunkStore) -> None:
    """Text PostgreSQL cannot hold (NUL) is stored as a space on pgvector; other text, emoji included, is exact;
    vectors read back bit-exact (the similarity of a vector with itself is 1 within float32 rounding)."""
    text = "Zero\x00byte 🔥 naïve — ümlaut"
    chunk = make_chunks("c", "d", [text])
    vector = unit(np.random.default_rng(11), 1, 7)
    store.add(chunk, vector)
    (stored,) = store.chunks([chunk[0].id])
    expected = text.replace("\x00", " ") if store.backend == "pgvector" else text
    assert stored.text == expected
    assert store.vector_search("c", vector[0], 1)[0][1] == pytest.approx(1.0, abs=1e-6)
    assert store.keyword_search("c", "naïve", 1)[0][0] == chunk[0].id


def test_pgvector_bm25_is_okapi_bm25(pg_database: str) -> None:
    """The SQL's scores equal Okapi BM25 computed here from each row's own tsvector (field-weighted term counts,
    FTS5's idf, k1 1.2, b 0.75), for a query whose words are rare, common and absent, across two collections."""
    from math import log

    from backend.services.rag_pgvector import BM25_B, BM25_K1, FIELD_WEIGHTS
    from backend.services.rag_store import TERM

    store = PgvectorStore(pg_database)
    texts = [
        "The Zorblat-7 reactor vents through valve XK-42; the reactor cools.",
        "Valves and valve seats: every reactor valve is checked weekly.",
        *[f"Routine note {i}: the reactor hall was swept." for i in range(12)],
        "Nothing here matches the question at all.",
    ]
    chunks = make_chunks("c", "d", texts, filename="valve-manual.txt")
    store.add(chunks, unit(np.random.default_rng(12), len(chunks), 8))
    store.add(make_chunks("other", "x", ["reactor valve valve valve"]), unit(np.random.default_rng(13), 1, 8))
    query = "Which valve does the Zorblat-7 reactor use? pumps"
    try:
        with store._connection() as db:
            words = " ".join(term.casefold() for term in TERM.findall(query))  # what keyword_search sends
            terms = {row[0] for row in db.run("SELECT lexeme FROM unnest(to_tsvector('english', :q))", q=words)}
            rows = db.run(
                "SELECT c.id, u.lexeme, u.weights FROM orchard_rag_chunks c, unnest(c.tsv) u "
                "WHERE c.collection_id = 'c'"
            )
        docs: dict[str, dict[str, float]] = {}
        for chunk_id, lexeme, weights in rows:
            docs.setdefault(chunk_id, {})[lexeme] = sum(FIELD_WEIGHTS[w] for w in weights)
        lengths = {chunk_id: len(lexemes) for chunk_id, lexemes in docs.items()}
        n, mean = len(docs), sum(lengths.values()) / len(docs)
        df = {t: sum(t in lexemes for lexemes in docs.values()) for t in terms}
        expected = {}
        for chunk_id, lexemes in docs.items():
            score = 0.0
            for t in terms & lexemes.keys():
                idf = max(log((n - df[t] + 0.5) / (df[t] + 0.5)), 1e-6)
                tf = lexemes[t]
                score += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * lengths[chunk_id] / mean))
            if score:
                expected[chunk_id] = score
        found = store.keyword_search("c", query, 100)
        assert len(expected) == n - 1 and {"valv", "reactor", "zorblat", "pump"} <= terms
        assert dict(found) == pytest.approx(expected, rel=1e-9)
        assert found[0][0] == chunks[0].id and found[1][0] == chunks[1].id
    finally:
        store.close()


def test_pgvector_urls_and_errors(postgres_server: postgres.Server, pg_database: str) -> None:
    """The URL's parts reach the driver (password never in the description); an unreachable server, a missing
    database and a user who may not create the extension each fail at once with a message that says so."""
    options = connection_options("postgresql://ann:s%40cret@db.example:6543/rag?sslmode=require")
    assert (options["user"], options["password"], options["host"], options["port"], options["database"]) == (
        "ann",
        "s@cret",
        "db.example",
        6543,
        "rag",
    )
    assert options["ssl_context"] is not None and "s@cret" not in describe("postgresql://ann:s%40cret@db/rag")
    with pytest.raises(ValueError):
        connection_options("mysql://x@y/z")
    with pytest.raises(ValueError):
        connection_options("postgresql://x@y/z?sslmode=sometimes")
    with pytest.raises(RuntimeError, match="Cannot reach"):
        PgvectorStore("postgresql://orchard@127.0.0.1:9/none")
    missing = pg_database.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(RuntimeError, match="no_such_database"):
        PgvectorStore(missing)
    postgres_server.psql("CREATE ROLE plain LOGIN")
    postgres_server.psql("CREATE DATABASE plain_db OWNER plain")
    with pytest.raises(RuntimeError, match="CREATE EXTENSION vector"):
        PgvectorStore(postgres_server.url("plain_db").replace("orchard@", "plain@"))
    postgres_server.psql("CREATE EXTENSION vector", database="plain_db")  # what the owner of the server does
    store = PgvectorStore(postgres_server.url("plain_db").replace("orchard@", "plain@"))
    store.add(make_chunks("c", "d", ["granted"]), unit(np.random.default_rng(12), 1, 4))
    assert store.count("c") == 1
    store.close()
