"""Collections, ingest jobs and retrieval through the API, with the real bundled embedder (all-MiniLM-L6-v2) and the
real indexes (the SQLite file; PostgreSQL with pgvector on a server the tests start): planted facts among many
distractors found by reworded questions, re-ingest adding nothing, a deleted document never retrieved again, bad files
reported by name, no script text from HTML."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from backend.config import Settings
from backend.main import create_app
from backend.services import rag_pipeline
from backend.services.rag_pipeline import Embedder
from tests.factories import make_embedder, make_model

FACTS = [  # (the planted fact, a reworded question about it): names and values are made up, so no model knows them
    ("{name} was born in the harbour town of {place}.", "In which town did {name} come into the world?"),
    ("The cargo ship {name} carries {thing} across the northern sea.", "What goods does the vessel {name} transport?"),
    ("The {name} protocol was first released as version {code}.", "Which version number did {name} ship with?"),
    ("Chef {name} makes a soup whose main ingredient is {thing}.", "What is the key ingredient of {name}'s soup?"),
    ("The {name} observatory sits on top of Mount {place}.", "On which mountain is the {name} telescope located?"),
    ("{name} repaired the clock tower of {place} with brass gears.", "Which town's clock tower was fixed by {name}?"),
    ("The rare {name} orchid only blooms in {thing} soil.", "In what kind of ground does the {name} flower grow?"),
    ("Professor {name} discovered the enzyme {code} in frogs.", "Which enzyme was found by Professor {name}?"),
]
DISTRACTORS = [
    "The annual report was printed on recycled paper.",
    "Rain fell for most of the week, and the river rose above its banks.",
    "The committee postponed its vote until the next meeting.",
    "Several volunteers painted the fence of the old school.",
    "A new bakery opened near the railway station in the autumn.",
    "The museum extended its opening hours during the summer festival.",
    "Engineers inspected the bridge after the storm and found no damage.",
    "The library received a donation of rare maps and atlases.",
    "Local farmers reported an unusually large harvest of apples.",
    "The choir rehearsed twice a week in the town hall.",
    "A small earthquake was recorded far offshore, with no damage reported.",
    "The football club appointed a new coach for the season.",
    "Students built a weather station on the roof of the college.",
    "The ferry timetable changes when the winter schedule begins.",
    "Street lamps along the promenade were replaced with brighter ones.",
    "The council published new rules for recycling glass and plastic.",
]
SYLLABLES = ["ka", "vor", "lin", "dra", "mes", "tul", "quen", "bar", "sil", "oth", "ri", "zan", "pel", "gor", "ny"]


def made_up(rng: random.Random, parts: int = 3) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def corpus(n: int = 80, seed: int = 7) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """``n`` short notes, each with one planted fact among unrelated sentences (and another note's name, so names
    alone do not give a note away), and a reworded question per note with the file that answers it."""
    rng = random.Random(seed)
    names = [f"{made_up(rng)} {made_up(rng, 2)}" if i % 2 else made_up(rng) for i in range(n)]
    files, questions = [], []
    for i, name in enumerate(names):
        fact, question = FACTS[i % len(FACTS)]
        values = {
            "name": name,
            "place": made_up(rng),
            "thing": rng.choice(["saffron", "copper wire", "volcanic", "chalky", "timber", "sea salt", "peat"]),
            "code": f"{rng.choice('QXKZ')}{rng.choice('RTVW')}-{rng.randrange(100, 999)}",
        }
        sentences = [
            *rng.sample(DISTRACTORS, 4),
            f"{names[(i + 7) % n]} was mentioned in last year's newsletter.",
            f"A letter from {names[(i + 13) % n]} arrived too late for the meeting.",
        ]
        sentences.insert(rng.randrange(len(sentences) + 1), fact.format(**values))
        text = f"# Note {i}\n\n" + " ".join(sentences[:4]) + "\n\n" + " ".join(sentences[4:]) + "\n"
        file = f"note-{i:02d}.md"
        files.append((file, text.encode()))
        questions.append((question.format(**values), file))
    return files, questions


@pytest.fixture
def client(settings: Settings, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The app; on the PostgreSQL store when a test is parametrized with "pgvector" (new collections go there)."""
    settings.rag_top_k = 5
    if getattr(request, "param", "sqlite") == "pgvector":
        settings.rag_database_url = SecretStr(request.getfixturevalue("pg_database"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


both_stores = pytest.mark.parametrize("client", ["sqlite", "pgvector"], indirect=True)


def collection(client: TestClient, **body: Any) -> str:
    response = client.post("/rag/collections", json={"name": "Notes", **body})
    assert response.status_code == 201, response.text
    collection_id: str = response.json()["id"]
    return collection_id


def ingest(client: TestClient, collection_id: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    multipart = [("files", (name, data, "application/octet-stream")) for name, data in files]
    response = client.post(f"/rag/collections/{collection_id}/documents?wait=true", files=multipart)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    assert job["kind"] == "ingest" and job["status"] == "ready", job
    return job


def query(client: TestClient, collection_id: str, text: str, mode: str = "hybrid", k: int = 5) -> list[dict[str, Any]]:
    response = client.post(f"/rag/collections/{collection_id}/query", json={"query": text, "mode": mode, "top_k": k})
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["hits"]
    return hits


@both_stores
def test_reworded_questions_find_the_planted_facts_among_distractors(client: TestClient) -> None:
    files, questions = corpus()
    collection_id = collection(client)
    job = ingest(client, collection_id, files)
    assert job["result"] == {"added": 80, "duplicates": 0, "failed": 0, "chunks": job["result"]["chunks"]}
    assert all(f["status"] == "added" and f["chunks"] >= 1 for f in job["files"])
    assert job["progress"]["completed"] == job["progress"]["total"] == 80
    recall, first = {}, {}
    for mode in ("hybrid", "vector", "keyword"):
        ranked = [([h["filename"] for h in query(client, collection_id, q, mode)], want) for q, want in questions]
        recall[mode] = sum(expected in names for names, expected in ranked) / len(ranked)
        first[mode] = sum(names[:1] == [expected] for names, expected in ranked) / len(ranked)
    print(f"{len(questions)} reworded questions: recall@5 {recall}, recall@1 {first}")
    assert recall["hybrid"] >= 0.9, recall
    assert first["hybrid"] >= max(first["vector"], first["keyword"]), first  # fusion beats either ranking alone

    # the evaluation endpoint measures the same on the pairs it is given...
    pairs = [{"question": q, "filename": f} for q, f in questions]
    measured = client.post(f"/rag/collections/{collection_id}/eval", json={"pairs": pairs, "top_k": 5}).json()
    assert measured["questions"] == 80 and measured["recall_at_k"] == recall["hybrid"]
    assert measured["mrr"] >= first["hybrid"] and not measured["generated"]
    # ...and on pairs it makes from the chunks (some are the notes' shared filler sentences, which no search can
    # tell apart: the figure is the collection's, not a perfect score)
    made = client.post(f"/rag/collections/{collection_id}/eval", json={"generate": 20, "mode": "keyword"}).json()
    assert made["generated"] and made["questions"] == 20 and made["recall_at_k"] >= 0.5, made
    ranks = [r["rank"] for r in made["results"]]
    assert made["recall_at_k"] == sum(r is not None for r in ranks) / 20
    assert made["mrr"] == round(sum(1 / r for r in ranks if r) / 20, 4)
    bad = client.post(f"/rag/collections/{collection_id}/eval", json={"pairs": [{"question": "x", "filename": "no"}]})
    assert bad.status_code == 400

    hit = query(client, collection_id, questions[0][0])[0]
    assert hit["rank"] == 1 and hit["filename"] == "note-00.md" and hit["heading"] == "Note 0" and hit["page"] is None
    assert hit["text"] in files[0][1].decode()
    listed = client.get(f"/rag/collections/{collection_id}/documents").json()["documents"]
    assert len(listed) == 80 and {d["kind"] for d in listed} == {"md"}
    info = client.get(f"/rag/collections/{collection_id}").json()
    assert info["documents"] == 80 and info["chunks"] == job["result"]["chunks"] and info["embedding_dim"] == 384


@both_stores
def test_the_same_content_again_adds_nothing_and_a_deleted_document_is_never_retrieved(client: TestClient) -> None:
    files, _ = corpus(6)
    collection_id = collection(client)
    first = ingest(client, collection_id, files)
    again = ingest(client, collection_id, [(f"copy-of-{name}", data) for name, data in files[:3]])
    assert again["result"] == {"added": 0, "duplicates": 3, "failed": 0, "chunks": 0}
    assert [f["document_id"] for f in again["files"]] == [f["document_id"] for f in first["files"][:3]]
    before = client.get(f"/rag/collections/{collection_id}").json()
    assert before["documents"] == 6

    doomed = first["files"][2]
    code = files[2][1].decode().split("released as version ")[1].split(".")[0]  # note 2's planted code
    assert any(h["document_id"] == doomed["document_id"] for h in query(client, collection_id, code, "keyword"))
    removed = client.delete(f"/rag/collections/{collection_id}/documents/{doomed['document_id']}")
    assert removed.status_code == 200 and removed.json()["chunks_removed"] == doomed["chunks"]
    for mode in ("hybrid", "vector", "keyword"):
        assert all(h["document_id"] != doomed["document_id"] for h in query(client, collection_id, code, mode, k=20))
    after = client.get(f"/rag/collections/{collection_id}").json()
    assert after["documents"] == 5 and after["chunks"] == before["chunks"] - doomed["chunks"]
    assert client.delete(f"/rag/collections/{collection_id}/documents/{doomed['document_id']}").status_code == 404
    # and once deleted, the same content is new again
    assert ingest(client, collection_id, [files[2]])["result"]["added"] == 1


def test_a_bad_file_is_reported_by_name_and_the_others_are_added(client: TestClient) -> None:
    collection_id = collection(client)
    html = (
        b"<html><head><title>Pump guide</title><script>var token = 'SCRIPTLEAK';</script>"
        b"<style>.x { color: STYLELEAK }</style></head><body><nav>NAVLEAK Home | About</nav>"
        b"<h1>Priming the pump</h1><p>Open the bleed valve &amp; wait for water.</p>"
        b"<footer>FOOTERLEAK copyright</footer></body></html>"
    )
    job = ingest(
        client,
        collection_id,
        [
            ("guide.html", html),
            ("broken.pdf", b"%PDF-1.4 this is not a PDF at all"),
            ("slides.pptx", b"PK\x03\x04 not supported"),
            ("empty.txt", b"   \n\n  "),
            ("plain.txt", b"The spare impeller is kept in locker nine."),
        ],
    )
    by_name = {f["filename"]: f for f in job["files"]}
    assert job["result"]["added"] == 2 and job["result"]["failed"] == 3
    for name in ("broken.pdf", "slides.pptx", "empty.txt"):
        assert by_name[name]["status"] == "failed" and name in by_name[name]["error"]["message"], by_name[name]
    assert by_name["guide.html"]["status"] == by_name["plain.txt"]["status"] == "added"
    # what a reader sees of the HTML, and nothing else
    for leak in ("SCRIPTLEAK", "STYLELEAK", "NAVLEAK", "FOOTERLEAK"):
        assert query(client, collection_id, leak, "keyword") == []
    [hit] = [h for h in query(client, collection_id, "bleed valve", "keyword") if h["filename"] == "guide.html"]
    assert "Open the bleed valve & wait for water." in hit["text"] and hit["heading"] == "Priming the pump"
    assert [d["filename"] for d in client.get(f"/rag/collections/{collection_id}/documents").json()["documents"]] == [
        "guide.html",
        "plain.txt",
    ]


@both_stores
def test_collections_are_listed_validated_and_deleted_with_everything_in_them(client: TestClient) -> None:
    assert client.get("/rag/collections/nope").status_code == 404
    assert client.post("/rag/collections/nope/query", json={"query": "x"}).status_code == 404
    bad = client.post("/rag/collections", json={"name": "x", "chunk_size": 64, "chunk_overlap": 64})
    assert bad.status_code == 400 and "chunk_overlap" in bad.json()["error"]["message"]
    first, second = collection(client, name="First"), collection(client, name="Second")
    files, _ = corpus(3)
    ingest(client, first, files)
    ingest(client, second, files[:1])
    listed = {c["name"]: c for c in client.get("/rag/collections").json()["collections"]}
    assert listed["First"]["documents"] == 3 and listed["Second"]["documents"] == 1
    assert listed["First"]["embedding_model"] == "all-MiniLM-L6-v2"
    assert listed["First"]["store"] in (("sqlite-vec", "numpy") if request_store(client) == "sqlite" else ("pgvector",))
    gone = client.delete(f"/rag/collections/{first}")
    assert gone.status_code == 200 and gone.json()["documents_removed"] == 3
    assert client.get(f"/rag/collections/{first}").status_code == 404
    assert query(client, second, "newsletter", "keyword")  # the other collection is untouched
    # an upload cannot escape its folder: the name is reduced to its last part
    job = ingest(client, second, [("../../etc/evil.txt", b"A note about valves.")])
    assert job["files"][0]["filename"] == "evil.txt"


@both_stores
def test_chat_answers_from_a_collection_and_carries_the_citations_it_was_given(
    client: TestClient, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "chatty", "llama", context_length=2048)
    assert client.post("/model/load", json={"model_path": str(model), "wait": True}).status_code == 200
    files, questions = corpus()
    large, small = collection(client, name="Large"), collection(client, name="Small")
    ingest(client, large, files)
    ingest(client, small, files[:2])
    body = {"max_new_tokens": 4, "temperature": 0, "stream": False}

    # a collection that fits the context comfortably goes in whole, in document order
    question = questions[0][0]
    whole = client.post(
        "/chat", json={**body, "messages": [{"role": "user", "content": question}], "collection_id": small}
    )
    assert whole.status_code == 200, whole.text
    cited = whole.json()["citations"]
    assert [c["filename"] for c in cited] == ["note-00.md", "note-01.md"] and [c["index"] for c in cited] == [1, 2]
    plain = client.post("/chat", json={**body, "messages": [{"role": "user", "content": question}]}).json()
    assert plain["citations"] == [] and whole.json()["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]

    # a large one gives the passages retrieved for the last question, streamed with the done event
    messages = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hello! Ask me about the notes."},
        {"role": "user", "content": questions[5][0]},
    ]
    with client.stream("POST", "/chat", json={**body, "stream": True, "messages": messages, "collection_id": large,
                                              "passages": 3}) as response:  # fmt: skip
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    done = json.loads(lines[-1].removeprefix("data: "))
    assert len(done["citations"]) == 3 and done["citations"][0]["filename"] == questions[5][1], done["citations"]
    assert done["citations"][0]["text"] in dict(files)[questions[5][1]].decode()

    # /v1 says the same, and in its last chunk when streaming
    v1 = {"model": "chatty", "messages": messages, "max_tokens": 4, "temperature": 0, "collection_id": large,
          "passages": 2}  # fmt: skip
    completion = client.post("/v1/chat/completions", json=v1).json()
    assert [c["filename"] for c in completion["citations"]][:1] == [questions[5][1]]
    with client.stream("POST", "/v1/chat/completions", json={**v1, "stream": True}) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert [c for c in chunks if "citations" in c][-1]["citations"] == completion["citations"]

    # nothing relevant: no passages, and the prompt says so
    unrelated = [{"role": "user", "content": "What is the boiling point of liquid nitrogen in kelvin?"}]
    nothing = client.post("/chat", json={**body, "messages": unrelated, "collection_id": large}).json()
    assert nothing["citations"] == []
    assert client.post("/chat", json={**body, "messages": unrelated, "collection_id": "nope"}).status_code == 404


def test_two_files_with_the_same_content_in_one_upload_add_one_document(client: TestClient) -> None:
    collection_id = collection(client)
    note = b"# Spares\n\nThe spare impeller is kept in locker nine."
    job = ingest(client, collection_id, [("a.md", note), ("b.md", note), ("c.txt", b"Another note entirely.")])
    a, b, c = job["files"]
    assert (a["status"], b["status"], c["status"]) == ("added", "duplicate", "added")
    assert b["document_id"] == a["document_id"]
    assert client.get(f"/rag/collections/{collection_id}").json()["documents"] == 2

    # a second collection's ingest is newer; asking for the first one's jobs still finds its own
    other = collection(client, name="Other")
    newer = ingest(client, other, [("d.md", b"# Elsewhere\n\nNothing about impellers.")])
    mine = client.get("/jobs", params={"collection_id": collection_id, "limit": 1}).json()["jobs"]
    assert [j["id"] for j in mine] == [job["id"]]
    assert [j["id"] for j in client.get("/jobs", params={"collection_id": other}).json()["jobs"]] == [newer["id"]]


def request_store(client: TestClient) -> str:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    return "pgvector" if settings.rag_database_url else "sqlite"


def test_collections_keep_the_store_they_were_made_in(settings: Settings, pg_database: str) -> None:
    """Setting ORCHARD_RAG_DATABASE_URL sends new collections to PostgreSQL while the SQLite ones keep working; a
    PostgreSQL collection without the URL (or its server) answers 503 and nothing of it is lost."""
    files, questions = corpus(4)
    with TestClient(create_app(settings)) as client:
        local = collection(client, name="Local")
        ingest(client, local, files[:2])
        refused = client.post("/rag/collections", json={"name": "Remote", "store": "pgvector"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "rag_store_unavailable"
        assert "ORCHARD_RAG_DATABASE_URL" in refused.json()["error"]["message"]
    settings.rag_database_url = SecretStr(pg_database)
    with TestClient(create_app(settings)) as client:
        remote = collection(client, name="Remote")
        ingest(client, remote, files[2:])
        collection(client, name="Pinned", store="sqlite")
        stores = {c["name"]: c["store"] for c in client.get("/rag/collections").json()["collections"]}
        assert stores["Remote"] == "pgvector" and stores["Local"] == stores["Pinned"] != "pgvector"
        assert query(client, local, questions[0][0])[0]["filename"] == questions[0][1]
        assert query(client, remote, questions[3][0])[0]["filename"] == questions[3][1]
        assert client.get("/config").json()["settings"]["rag_database_url"] == "**********"
        assert pg_database not in client.get("/config").text
    settings.rag_database_url = None
    with TestClient(create_app(settings)) as client:
        unavailable = client.post(f"/rag/collections/{remote}/query", json={"query": "anything"})
        assert unavailable.status_code == 503 and "Remote" in unavailable.json()["error"]["message"]
        assert client.delete(f"/rag/collections/{remote}").status_code == 503
        assert query(client, local, questions[1][0])[0]["filename"] == questions[1][1]
    settings.rag_database_url = SecretStr(pg_database)
    with TestClient(create_app(settings)) as client:  # still all there
        assert client.get(f"/rag/collections/{remote}").json()["documents"] == 2
        assert query(client, remote, questions[2][0])[0]["filename"] == questions[2][1]
        assert client.delete(f"/rag/collections/{remote}").json()["chunks_removed"] >= 2


def wait_job(client: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll a job until it ends."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("ready", "failed", "cancelled", "interrupted"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end")


def reembed(client: TestClient, collection_id: str, model: str) -> dict[str, Any]:
    response = client.patch(f"/rag/collections/{collection_id}", json={"embedding_model": model})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()["job"]
    assert job["kind"] == "reembed" and job["embedding_model"] == model
    return wait_job(client, job["id"])


class GatedEmbedder(Embedder):
    """The real embedder, made to wait at each encode until the test lets it go: a re-embedding caught mid-way."""

    def __init__(self, real: Embedder) -> None:
        super().__init__(real.model, real.name)
        self.entered, self.release = threading.Event(), threading.Event()

    def encode(self, texts: list[str]) -> Any:
        self.entered.set()
        assert self.release.wait(60)
        return super().encode(texts)


@both_stores
def test_changing_the_embedder_re_embeds_every_chunk_then_switches(client: TestClient, tmp_path: Path) -> None:
    """A re-embedding job writes a second index with the new embedder and switches to it when done: same documents
    and chunks, the new dimension, the old index gone; going back to the first embedder gives back its retrieval."""
    files, questions = corpus(24)
    collection_id = collection(client)
    ingest(client, collection_id, files)
    pairs = {"pairs": [{"question": q, "filename": f} for q, f in questions], "top_k": 5, "mode": "vector"}
    before = client.post(f"/rag/collections/{collection_id}/eval", json=pairs).json()
    info = client.get(f"/rag/collections/{collection_id}").json()
    rag = client.app.state.rag  # type: ignore[attr-defined]

    tiny = str(make_embedder(tmp_path / "tiny-embedder", dim=32))
    job = reembed(client, collection_id, tiny)
    assert job["status"] == "ready", job
    assert (
        job["result"] == {"chunks": info["chunks"], "embedding_dim": 32}
        and job["previous_model"] == info["embedding_model"]
    )
    assert job["progress"]["completed"] == job["progress"]["total"] == info["chunks"]
    after = client.get(f"/rag/collections/{collection_id}").json()
    assert (after["embedding_model"], after["embedding_dim"]) == (tiny, 32)
    assert (after["documents"], after["chunks"]) == (info["documents"], info["chunks"])
    moved = rag.collection(collection_id)
    assert moved.index_key == job["index_key"] != collection_id
    assert rag.store(moved).count(collection_id) == 0 and rag.store(moved).count(moved.index_key) == info["chunks"]
    # the vectors are the new embedder's: a chunk's own text finds it at similarity 1
    hit = query(client, collection_id, questions[3][0], "keyword")[0]
    text = f"{hit['heading']}\n{hit['text']}" if hit["heading"] else hit["text"]
    [same] = query(client, collection_id, text, "vector", k=1)
    assert same["text"] == hit["text"] and same["score"] == pytest.approx(1.0, abs=1e-5)
    # keyword search and citations do not depend on the embedder
    assert query(client, collection_id, questions[3][0], "keyword")[0]["filename"] == hit["filename"]

    back = reembed(client, collection_id, "all-MiniLM-L6-v2")
    assert back["status"] == "ready"
    again = client.post(f"/rag/collections/{collection_id}/eval", json=pairs).json()
    print(f"vector recall@5 {before['recall_at_k']}, MRR {before['mrr']} with MiniLM; after a round trip through a")
    print(f"tiny embedder {again['recall_at_k']}, {again['mrr']}")
    assert again["recall_at_k"] == before["recall_at_k"] and again["mrr"] == pytest.approx(before["mrr"], abs=0.02)
    assert rag.store(rag.collection(collection_id)).count(moved.index_key) == 0

    same_again = client.patch(f"/rag/collections/{collection_id}", json={"embedding_model": "all-MiniLM-L6-v2"})
    assert same_again.status_code == 400 and "already" in same_again.json()["error"]["message"]
    missing = client.patch(f"/rag/collections/{collection_id}", json={"embedding_model": str(tmp_path / "none")})
    assert missing.status_code == 400
    renamed = client.patch(f"/rag/collections/{collection_id}", json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["collection"]["name"] == "Renamed"
    assert renamed.json()["job"] is None


def test_while_re_embedding_the_old_index_answers_and_a_cancel_or_failure_changes_nothing(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mid-way: searches use the old embedder, adding files or deleting the collection is refused (409), deleting a
    document works and the new index drops it too. A cancel mid-way, or an embedder that reads too few tokens,
    leaves the collection as it was and no second index behind."""
    files, questions = corpus(12)
    collection_id = collection(client)
    first = ingest(client, collection_id, files)
    rag = client.app.state.rag  # type: ignore[attr-defined]
    tiny = str(make_embedder(tmp_path / "tiny-embedder", dim=16))
    gated = GatedEmbedder(rag_pipeline.get_embedder(tiny))
    monkeypatch.setitem(rag_pipeline._EMBEDDERS, tiny, gated)
    monkeypatch.setattr(rag_pipeline, "REEMBED_BATCH", 8)  # several batches, so a cancel lands between two
    total_rows = lambda: rag.sqlite._db.execute("select count(*) from chunks").fetchone()[0]  # noqa: E731
    chunks = client.get(f"/rag/collections/{collection_id}").json()["chunks"]

    # a cancel between two batches: the new index is removed, the collection keeps its embedder
    before = rag.collection(collection_id)
    started = client.patch(f"/rag/collections/{collection_id}", json={"embedding_model": tiny}).json()["job"]
    assert gated.entered.wait(60)
    cancel = threading.Thread(target=lambda: client.delete(f"/jobs/{started['id']}"))
    cancel.start()
    run = client.app.state.jobs._runs[started["id"]]  # type: ignore[attr-defined]
    assert run.cancel.wait(30)
    gated.release.set()
    cancel.join(30)
    assert wait_job(client, started["id"])["status"] == "cancelled"
    assert rag.collection(collection_id) == before and total_rows() == chunks

    # mid-way: the old index answers, files and collection deletes wait, a document delete reaches both indexes
    gated.entered.clear()
    gated.release.clear()
    started = client.patch(f"/rag/collections/{collection_id}", json={"embedding_model": tiny}).json()["job"]
    assert gated.entered.wait(60)
    assert query(client, collection_id, questions[0][0])[0]["filename"] == questions[0][1]  # MiniLM still
    busy = client.post(f"/rag/collections/{collection_id}/documents", files=[("files", ("x.txt", b"more text"))])
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "collection_busy"
    assert client.delete(f"/rag/collections/{collection_id}").status_code == 409
    doomed = first["files"][5]["document_id"]
    assert client.delete(f"/rag/collections/{collection_id}/documents/{doomed}").status_code == 200
    gated.release.set()
    done = wait_job(client, started["id"])
    assert done["status"] == "ready", done
    moved = rag.collection(collection_id)
    assert moved.embedding_model == tiny and moved.embedding_dim == 16
    remaining = client.get(f"/rag/collections/{collection_id}").json()["chunks"]
    assert rag.store(moved).count(moved.index_key) == remaining == chunks - first["files"][5]["chunks"]
    assert rag.store(moved).count(moved.index_key, doomed) == 0 and total_rows() == remaining

    # an embedder that reads fewer tokens than the chunks hold fails the job; nothing changes
    short = str(make_embedder(tmp_path / "short-embedder", dim=8, max_seq_length=64))
    current = rag.collection(collection_id)
    failed = reembed(client, collection_id, short)
    assert failed["status"] == "failed" and "reads at most 64 tokens" in failed["error"]["message"], failed
    assert rag.collection(collection_id) == current and total_rows() == remaining
