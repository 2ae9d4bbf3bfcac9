"""Datasets: import (formats and shapes), located errors with nothing stored, statistics, trained-span preview."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from huggingface_hub import HfApi
from pydantic import SecretStr

from backend.config import Settings
from tests.hub_server import HubServer


def jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def to_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def upload(client: TestClient, filename: str, content: str | bytes, name: str | None = None) -> Any:
    data = {"name": name} if name else None
    return client.post("/datasets", files={"file": (filename, content)}, data=data)


def datasets_dir(settings: Settings) -> Path:
    return settings.data_path / "datasets"


def stored(settings: Settings) -> list[str]:
    root = datasets_dir(settings)
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def load(client: TestClient, model_id: str) -> None:
    response = client.post("/model/load", json={"model_id": model_id, "wait": True})
    assert response.status_code == 200, response.text


CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a fruit."},
            {"role": "assistant", "content": "Apple."},
            {"role": "user", "content": "Another?"},
            {"role": "assistant", "content": "Pear."},
        ]
    },
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "Be kind."},
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "hello"},
        ]
    },
    {"conversations": [{"from": "human", "value": "bye"}, {"from": "gpt", "value": "see you"}]},
]
INSTRUCTION = [
    {"instruction": "Translate to French", "input": "cat", "output": "chat"},
    {"instruction": "Say hi", "input": "", "output": "hi"},
    {"instruction": "Count", "output": "1 2 3"},
]
PROMPT_COMPLETION = [{"prompt": "The sky is", "completion": " blue."}, {"prompt": "Grass is", "completion": " green."}]
TEXT = [{"text": "Orchard runs models."}, {"text": "On your own machine."}]


@pytest.mark.parametrize(
    ("filename", "content", "fmt", "shape", "count"),
    [
        ("chat.jsonl", jsonl(CHAT), "jsonl", "chat", 2),
        ("chat.json", json.dumps(CHAT, indent=2), "json", "chat", 2),
        ("sharegpt.jsonl", jsonl(SHAREGPT), "jsonl", "sharegpt", 2),
        ("alpaca.json", json.dumps(INSTRUCTION), "json", "instruction", 3),
        ("alpaca.csv", to_csv([{"instruction": "a", "input": "", "output": "b"}] * 4), "csv", "instruction", 4),
        ("pc.jsonl", jsonl(PROMPT_COMPLETION), "jsonl", "prompt_completion", 2),
        ("pc.csv", to_csv(PROMPT_COMPLETION), "csv", "prompt_completion", 2),
        ("text.csv", to_csv(TEXT), "csv", "text", 2),
        ("text.json", jsonl(TEXT), "jsonl", "text", 2),  # JSON lines in a .json file
        ("noext", jsonl(CHAT), "jsonl", "chat", 2),
    ],
)
def test_formats_and_shapes_import(
    client: TestClient, settings: Settings, filename: str, content: str, fmt: str, shape: str, count: int
) -> None:
    response = upload(client, filename, content)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["shape"], body["num_examples"]) == (fmt, shape, count)
    assert body["name"] == Path(filename).stem and body["created_at"]
    lines = (datasets_dir(settings) / body["id"] / "data.jsonl").read_text().splitlines()
    assert len(lines) == count
    first = json.loads(lines[0])
    if shape == "text":
        assert first == {"text": TEXT[0]["text"]}
    else:  # every other shape is stored as chat messages
        assert [m["role"] for m in first["messages"]][-1] == "assistant"
    assert json.loads((datasets_dir(settings) / body["id"] / "meta.json").read_text())["id"] == body["id"]


def test_shapes_normalise_to_chat_messages(client: TestClient, settings: Settings) -> None:
    ids = [
        upload(client, f, c).json()["id"]
        for f, c in (("s.jsonl", jsonl(SHAREGPT)), ("i.json", json.dumps(INSTRUCTION)))
    ]
    sharegpt = json.loads((datasets_dir(settings) / ids[0] / "data.jsonl").read_text().splitlines()[0])
    assert sharegpt == {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]
    }
    instruction = json.loads((datasets_dir(settings) / ids[1] / "data.jsonl").read_text().splitlines()[0])
    assert instruction["messages"] == [
        {"role": "user", "content": "Translate to French\n\ncat"},
        {"role": "assistant", "content": "chat"},
    ]


def test_unusual_text_survives(client: TestClient, settings: Settings) -> None:
    rows = [{"text": "line\u2028separator and \u00e9\u00e8 \U0001f600"}, {"text": "x"}]
    raw = "".join(json.dumps(row, ensure_ascii=False) + "\r\n" for row in rows).encode("utf-8-sig")
    body = upload(client, "u.jsonl", raw).json()
    assert body["num_examples"] == 2
    stored_lines = (datasets_dir(settings) / body["id"] / "data.jsonl").read_text(encoding="utf-8").split("\n")
    assert json.loads(stored_lines[0]) == rows[0]
    deep = upload(client, "deep.jsonl", '{"text": ' + "[" * 100_000 + "\n").json()["error"]
    assert deep["code"] == "invalid_dataset" and deep["errors"][0]["line"] == 1
    not_utf8 = upload(client, "latin.csv", "text\ncaf\xe9\n".encode("latin-1")).json()["error"]
    assert not_utf8["code"] == "invalid_dataset" and "UTF-8" in not_utf8["errors"][0]["message"]
    assert len(stored(settings)) == 1


def test_name_from_the_form(client: TestClient) -> None:
    assert upload(client, "x.jsonl", jsonl(TEXT), name="My notes").json()["name"] == "My notes"


GOOD = json.dumps(CHAT[1])
EMPTY_REPLY = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{GOOD}\n{GOOD[:-7]}\n{GOOD}\n", [(2, None, "not valid JSON")]),  # a truncated line
        (
            f'{GOOD}\n{{"messages": [{{"role": "user"}}, {{"role": "assistant", "content": "x"}}]}}\n',
            [(2, "messages[0].content", "missing field 'content'")],
        ),
        (
            f'{{"messages": [{{"role": "robot", "content": "x"}}]}}\n{GOOD}\n',
            [(1, "messages[0].role", "unknown role 'robot'")],
        ),
        (
            f"{GOOD}\n{GOOD}\n{EMPTY_REPLY}\n",
            [(3, "messages[1].content", "empty assistant reply")],
        ),
        (
            f'{GOOD}\n{GOOD}\n{{"prompt": "a", "completion": "b"}}\n',
            [(3, "prompt", "a prompt_completion row in a chat dataset")],
        ),
        (f'{GOOD}\n{{"id": 7}}\n', [(2, None, "no chat fields")]),
        (f"{GOOD}\n[1, 2]\n", [(2, None, "a row must be an object")]),
        ("", [(None, None, "the file is empty")]),
        ("\n \n", [(None, None, "the file is empty")]),
    ],
    ids=[
        "truncated",
        "missing-field",
        "unknown-role",
        "empty-reply",
        "other-shape",
        "no-fields",
        "not-object",
        "empty",
        "blank",
    ],
)
def test_bad_files_are_refused_with_located_errors(
    client: TestClient, settings: Settings, content: str, expected: list[tuple[int | None, str | None, str]]
) -> None:
    response = upload(client, "bad.jsonl", content)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_dataset"
    assert error["error_count"] == len(expected)
    got = [(e["line"], e["field"]) for e in error["errors"]]
    assert got == [(line, field) for line, field, _ in expected]
    for reported, (_, _, words) in zip(error["errors"], expected, strict=True):
        assert words in reported["message"]
    assert stored(settings) == []  # nothing on disk, not even a temporary folder
    assert client.get("/datasets").json()["datasets"] == []


def test_errors_name_the_first_twenty_and_count_all(client: TestClient, settings: Settings) -> None:
    rows = [{"instruction": "q", "output": ""} for _ in range(30)] + [{"instruction": "q", "output": "a"}]
    error = upload(client, "many.json", json.dumps(rows, indent=1)).json()["error"]
    assert error["error_count"] == 30 and len(error["errors"]) == 20
    assert all(e["field"] == "output" for e in error["errors"])
    # indent=1: each row spans four lines after the opening '['
    assert [e["line"] for e in error["errors"][:3]] == [2, 6, 10]
    assert stored(settings) == []


def test_truncated_json_file_and_csv_lines(client: TestClient, settings: Settings) -> None:
    cut = json.dumps(CHAT, indent=2)[:-40]
    error = upload(client, "cut.json", cut).json()["error"]
    assert error["code"] == "invalid_dataset" and error["errors"][0]["line"] is not None
    table = 'prompt,completion\na,b\n"multi\nline",ok\nc,\n'
    error = upload(client, "t.csv", table).json()["error"]
    assert [(e["line"], e["field"]) for e in error["errors"]] == [(5, "completion")]
    assert stored(settings) == []


def test_too_large_is_refused(client: TestClient, settings: Settings) -> None:
    settings.max_dataset_mb = 0.001  # the service's own count (the middleware's limit was fixed at start-up)
    response = upload(client, "big.jsonl", jsonl(TEXT * 100))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert stored(settings) == []


def test_list_get_delete(client: TestClient, settings: Settings) -> None:
    first = upload(client, "a.jsonl", jsonl(TEXT)).json()
    second = upload(client, "b.jsonl", jsonl(CHAT)).json()
    listed = client.get("/datasets").json()["datasets"]
    assert [d["id"] for d in listed] == [second["id"], first["id"]]  # newest first
    assert client.get(f"/datasets/{first['id']}").json()["num_examples"] == 2
    deleted = client.delete(f"/datasets/{first['id']}")
    assert deleted.status_code == 200 and deleted.json()["freed_bytes"] > 0
    assert stored(settings) == [second["id"]]
    for method, path in (
        ("GET", f"/datasets/{first['id']}"),
        ("DELETE", f"/datasets/{first['id']}"),
        ("GET", f"/datasets/{first['id']}/preview"),
        ("GET", "/datasets/..%2F..%2Fetc"),
        ("GET", "/datasets/not-an-id"),
    ):
        response = client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] in ("dataset_not_found", "not_found")


def test_statistics_without_a_model(client: TestClient) -> None:
    rows = [*CHAT, CHAT[1], CHAT[1], {"messages": [{"role": "user", "content": "only a question"}]}]
    dataset = upload(client, "d.jsonl", jsonl(rows)).json()
    stats = client.get(f"/datasets/{dataset['id']}").json()["statistics"]
    assert stats["num_examples"] == 5
    assert stats["duplicates"] == 2
    assert stats["no_trainable_tokens"] == 1
    assert stats["characters"]["min"] == len("2+2?4")
    assert stats["characters"]["max"] == sum(len(m["content"]) for m in CHAT[0]["messages"])
    assert stats["tokens"] is None and "load a model" in stats["tokens_reason"]


@pytest.mark.parametrize("model_id", ["tiny-llama", "tiny-gpt2"])
def test_statistics_with_the_loaded_tokenizer(client: TestClient, local_models: Path, model_id: str) -> None:
    long_reply = {"messages": [{"role": "user", "content": "Tell me"}, {"role": "assistant", "content": "word " * 300}]}
    rows = [*CHAT, CHAT[1], long_reply]
    dataset = upload(client, "d.jsonl", jsonl(rows)).json()
    load(client, model_id)
    tokens = client.get(f"/datasets/{dataset['id']}", params={"max_seq_length": 200, "bins": 5}).json()["statistics"][
        "tokens"
    ]
    assert tokens["model_id"] == model_id
    assert tokens["chat_template"] == ("model" if model_id == "tiny-llama" else "fallback")
    assert len(tokens["histogram"]) == 5
    assert sum(b["count"] for b in tokens["histogram"]) == len(rows)
    assert tokens["histogram"][-1]["count"] >= 1  # the long row sits in the last bin
    assert tokens["max"] >= tokens["histogram"][-1]["start"]
    assert tokens["over_max_seq_length"] == 1 and tokens["kept_examples"] == len(rows) - 1
    assert tokens["policy"] == "drop" and tokens["max_seq_length"] == 200
    assert tokens["max"] > 300  # a row of 300 words is over 300 tokens, the others are far under 200
    default = client.get(f"/datasets/{dataset['id']}").json()["statistics"]["tokens"]
    assert default["max_seq_length"] == 512 and default["over_max_seq_length"] == (tokens["max"] > 512)


def test_preview_needs_a_model(client: TestClient) -> None:
    dataset = upload(client, "d.jsonl", jsonl(CHAT)).json()
    response = client.get(f"/datasets/{dataset['id']}/preview")
    assert response.status_code == 409 and response.json()["error"]["code"] == "model_not_loaded"


def test_preview_marks_exactly_the_assistant_turns(client: TestClient, local_models: Path) -> None:
    dataset = upload(client, "d.jsonl", jsonl(CHAT)).json()
    load(client, "tiny-llama")
    preview = client.get(f"/datasets/{dataset['id']}/preview", params={"limit": 10}).json()
    assert preview["model_id"] == "tiny-llama" and preview["chat_template"] == "model" and preview["total"] == 2
    assert [row["index"] for row in preview["rows"]] == [0, 1]
    first = preview["rows"][0]
    assert "".join(s["text"] for s in first["segments"]) == first["text"]
    assert first["text"] == (
        "<|system|>\nYou are terse.</s>\n<|user|>\nName a fruit.</s>\n<|assistant|>\nApple.</s>\n"
        "<|user|>\nAnother?</s>\n<|assistant|>\nPear.</s>\n"
    )
    trained = [s["text"] for s in first["segments"] if s["trained"]]
    assert trained == ["Apple.</s>\n", "Pear.</s>\n"]  # each reply with its end-of-turn token, nothing else
    context = "".join(s["text"] for s in first["segments"] if not s["trained"])
    assert "Apple." not in context and "Pear." not in context and context.endswith("<|assistant|>\n")
    assert first["num_tokens"] > 0 and first["warning"] is None
    second = client.get(f"/datasets/{dataset['id']}/preview", params={"offset": 1, "limit": 1}).json()["rows"]
    assert [r["index"] for r in second] == [1]


def test_preview_with_the_fallback_transcript(client: TestClient, local_models: Path) -> None:
    dataset = upload(client, "d.jsonl", jsonl(PROMPT_COMPLETION)).json()
    load(client, "tiny-gpt2")
    row = client.get(f"/datasets/{dataset['id']}/preview").json()["rows"][0]
    assert row["text"] == "User: The sky is\n\nAssistant:  blue.\n\n"
    assert [(s["text"], s["trained"]) for s in row["segments"]] == [
        ("User: The sky is\n\nAssistant:", False),
        ("  blue.\n\n", True),
    ]


def test_preview_of_text_rows_trains_on_everything(client: TestClient, local_models: Path) -> None:
    dataset = upload(client, "t.jsonl", jsonl(TEXT)).json()
    load(client, "tiny-llama")
    row = client.get(f"/datasets/{dataset['id']}/preview").json()["rows"][0]
    assert row["segments"] == [{"text": TEXT[0]["text"], "trained": True}]


# ---------------------------------------------------------------------------------------------------- Parquet


def to_parquet(rows: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({"text": pa.array([], pa.string())}), out)
    return out.getvalue()


def stored_rows(settings: Settings, dataset_id: str) -> list[Any]:
    return [json.loads(line) for line in (datasets_dir(settings) / dataset_id / "data.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("rows", "shape"),
    [(CHAT, "chat"), (SHAREGPT, "sharegpt"), (INSTRUCTION, "instruction"), (TEXT, "text")],
    ids=["chat", "sharegpt", "instruction", "text"],
)
def test_parquet_rows_import_like_json_rows(
    client: TestClient, settings: Settings, rows: list[dict[str, Any]], shape: str
) -> None:
    # Nested lists of structs (messages, conversations) come back as lists of dicts; the instruction table has a
    # null `input` in its last row (the JSON row lacks the key), read as a row without it.
    data = to_parquet(rows)
    with pytest.raises(UnicodeDecodeError):  # binary, not UTF-8: an import that decoded it first would refuse it
        data.decode("utf-8")
    response = upload(client, f"{shape}.parquet", data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["shape"], body["num_examples"]) == ("parquet", shape, len(rows))
    assert body["source"] == "upload" and body["source_bytes"] == len(data)
    from_json = upload(client, f"{shape}.json", json.dumps(rows)).json()
    assert stored_rows(settings, body["id"]) == stored_rows(settings, from_json["id"])
    # Without an extension the magic bytes tell a Parquet file.
    assert upload(client, "noext", data).json()["format"] == "parquet"


def test_corrupt_parquet_is_refused_whole(client: TestClient, settings: Settings) -> None:
    good = to_parquet(CHAT)
    for content in (good[: len(good) // 2], b"PAR1 not really", jsonl(CHAT).encode(), b""):
        response = upload(client, "cut.parquet", content)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_dataset" and error["error_count"] == 1
        assert error["errors"] == [{"line": None, "field": None, "message": error["errors"][0]["message"]}]
        assert "Parquet" in error["errors"][0]["message"]
    empty = upload(client, "empty.parquet", to_parquet([])).json()["error"]
    assert empty["errors"] == [{"line": None, "field": None, "message": "the file holds no rows"}]
    assert stored(settings) == []


def test_parquet_faulty_rows_are_located_by_row_number(client: TestClient, settings: Settings) -> None:
    rows = [
        CHAT[1],
        {"messages": [{"role": "user", "content": "q"}, {"role": "robot", "content": "beep"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]},
        {"messages": None},
        CHAT[1],
    ]
    response = upload(client, "faulty.parquet", to_parquet(rows))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [(e["line"], e["field"]) for e in error["errors"]] == [
        (2, "messages[1].role"),
        (3, "messages[1].content"),
        (4, None),  # a null `messages` is a row without it
    ]
    assert "unknown role 'robot'" in error["errors"][0]["message"]
    assert error["message"].startswith("3 of 5 rows cannot be used (first: row 2:")
    assert stored(settings) == []


# ---------------------------------------------------------------------------------------------------- the Hub

HUB_TOKEN = "hf_dataset_token"
CHATS = "orchard-test/chats"
MORE_CHAT = [
    {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
    for i in range(3)
]


def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


@pytest.fixture
def data_hub(settings: Settings, tmp_path: Path) -> Iterator[HubServer]:
    """A Hub-compatible server with dataset repos; ``settings`` point at it."""
    chats = {
        "README.md": "# Chats\n",
        "data/train-00000-of-00002.parquet": to_parquet(CHAT),
        "data/train-00001-of-00002.parquet": to_parquet(MORE_CHAT),
        "test.jsonl": jsonl(PROMPT_COMPLETION),
    }
    with HubServer() as server:
        server.add_repo(CHATS, write_files(tmp_path / "chats", chats), repo_type="dataset")
        ambiguous = {
            "data/train_sft-00000-of-00001.parquet": to_parquet(CHAT),
            "data/train_gen-00000-of-00001.parquet": to_parquet(CHAT),
        }
        server.add_repo("orchard-test/ambiguous", write_files(tmp_path / "ambiguous", ambiguous), repo_type="dataset")
        single = write_files(tmp_path / "single", {"alpaca_data.json": json.dumps(INSTRUCTION), "README.md": "x"})
        server.add_repo("orchard-test/alpaca", single, repo_type="dataset")
        for kind in ("private", "gated"):
            server.add_repo(
                f"orchard-test/{kind}-chats",
                write_files(tmp_path / kind, {"train.jsonl": jsonl(CHAT)}),
                repo_type="dataset",
                private=kind == "private",
                gated=kind == "gated",
                token=HUB_TOKEN,
            )
        faulty = {
            "train/part-0.jsonl": jsonl(CHAT),
            "train/part-1.jsonl": f"{json.dumps(CHAT[1])}\n{json.dumps(CHAT[1])[:-9]}\n",
            "train/part-2.jsonl": jsonl(
                [CHAT[1], {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}]
            ),
        }
        server.add_repo("orchard-test/faulty", write_files(tmp_path / "faulty", faulty), repo_type="dataset")
        broken = write_files(tmp_path / "broken", {"train.parquet": b"PAR1 cut short"})
        server.add_repo("orchard-test/broken", broken, repo_type="dataset")
        server.add_repo("orchard-test/a-model", write_files(tmp_path / "model", {"train.jsonl": jsonl(CHAT)}))
        settings.hf_endpoint = server.endpoint
        yield server


def from_hub(client: TestClient, repo_id: str, **body: Any) -> Any:
    return client.post("/datasets/from-hub", json={"repo_id": repo_id, **body})


def fetched(hub: HubServer) -> list[str]:
    """The repo files the server was asked for (HEAD or GET), in order."""
    return [r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.requests if "/resolve/" in r.path]


def test_from_hub_reads_the_train_split_shards_in_order(
    client: TestClient, settings: Settings, data_hub: HubServer
) -> None:
    response = from_hub(client, CHATS)
    assert response.status_code == 201, response.text
    body = response.json()
    sha = HfApi(endpoint=data_hub.endpoint).dataset_info(CHATS).sha
    assert body["source"] == f"hub:{CHATS}@{sha}"
    assert (body["format"], body["shape"], body["num_examples"]) == ("parquet", "chat", len(CHAT) + len(MORE_CHAT))
    assert body["name"] == f"{CHATS} (train)"
    assert body["source_filename"] == "data/train-00000-of-00002.parquet (+1 more)"
    assert stored_rows(settings, body["id"]) == [*CHAT, *MORE_CHAT]  # shard 0 then shard 1
    assert set(fetched(data_hub)) == {"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}
    assert all(r.token is None for r in data_hub.requests)
    listed = client.get("/datasets").json()["datasets"]
    assert [(d["id"], d["source"]) for d in listed] == [(body["id"], body["source"])]
    # The files stay in the Hub cache: importing the same commit again fetches no file body.
    data_hub.reset_log()
    assert from_hub(client, CHATS, revision=sha, name="again").json()["name"] == "again"
    assert not [r for r in data_hub.requests if r.method == "GET" and "/resolve/" in r.path]


def test_from_hub_other_split_and_explicit_file(client: TestClient, settings: Settings, data_hub: HubServer) -> None:
    test = from_hub(client, CHATS, split="test").json()
    assert (test["format"], test["shape"], test["num_examples"]) == ("jsonl", "prompt_completion", 2)
    assert test["source_filename"] == "test.jsonl" and test["name"] == f"{CHATS} (test)"
    one = from_hub(client, CHATS, file="data/train-00001-of-00002.parquet").json()
    assert one["num_examples"] == len(MORE_CHAT) and stored_rows(settings, one["id"]) == MORE_CHAT
    assert one["name"] == f"{CHATS} (data/train-00001-of-00002.parquet)"
    # A repo whose one data file names no split: that file, whatever the split.
    alpaca = from_hub(client, "orchard-test/alpaca").json()
    assert (alpaca["format"], alpaca["shape"], alpaca["source_filename"]) == ("json", "instruction", "alpaca_data.json")

    missing = from_hub(client, CHATS, file="data/nope.parquet")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_request"
    assert "data/train-00000-of-00002.parquet" in missing.json()["error"]["candidates"]
    no_split = from_hub(client, CHATS, split="validation").json()["error"]
    assert no_split["code"] == "invalid_request" and "test.jsonl" in no_split["candidates"]
    assert len(stored(settings)) == 3


def test_from_hub_ambiguous_split_lists_the_candidates(
    client: TestClient, settings: Settings, data_hub: HubServer
) -> None:
    response = from_hub(client, "orchard-test/ambiguous")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["candidate_count"] == 2
    assert error["candidates"] == ["data/train_gen-00000-of-00001.parquet", "data/train_sft-00000-of-00001.parquet"]
    assert "`file`" in error["message"]
    assert fetched(data_hub) == [] and stored(settings) == []
    picked = from_hub(client, "orchard-test/ambiguous", split="train_sft")
    assert picked.status_code == 201 and picked.json()["source_filename"] == "data/train_sft-00000-of-00001.parquet"


def test_from_hub_missing_repo_revision_and_bad_ids(
    client: TestClient, settings: Settings, data_hub: HubServer
) -> None:
    missing = from_hub(client, "orchard-test/no-such-dataset")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "repo_not_found"
    assert "access_token" in missing.json()["error"]["message"]
    # A model repo is not a dataset repo: the namespaces are separate, as on the Hub.
    assert from_hub(client, "orchard-test/a-model").status_code == 404
    revision = from_hub(client, CHATS, revision="no-such-branch")
    assert revision.status_code == 404 and revision.json()["error"]["code"] == "revision_not_found"
    for bad, status, code in (
        ({"repo_id": "not//valid"}, 400, "invalid_request"),
        ({"repo_id": CHATS, "split": "../x"}, 422, "validation_error"),
        ({"repo_id": CHATS, "extra": 1}, 422, "validation_error"),
    ):
        response = client.post("/datasets/from-hub", json=bad)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert fetched(data_hub) == [] and stored(settings) == []


def test_from_hub_private_and_gated_repos(client: TestClient, settings: Settings, data_hub: HubServer) -> None:
    # The Hub answers an anonymous caller the same for a private repo as for a missing one: 404, with the hint.
    private = from_hub(client, "orchard-test/private-chats")
    assert private.status_code == 404 and "access_token" in private.json()["error"]["message"]
    assert from_hub(client, "orchard-test/private-chats", access_token="hf_wrong").status_code == 404
    # A gated repo lists its files to anyone but serves them only with access.
    gated = from_hub(client, "orchard-test/gated-chats")
    assert gated.status_code == 401 and gated.json()["error"]["code"] == "repo_access_denied"
    wrong = from_hub(client, "orchard-test/gated-chats", access_token="hf_wrong")
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "repo_access_denied"
    assert stored(settings) == []
    for repo_id in ("orchard-test/private-chats", "orchard-test/gated-chats"):
        response = from_hub(client, repo_id, access_token=HUB_TOKEN)
        assert response.status_code == 201, response.text
        assert response.json()["num_examples"] == len(CHAT)
    assert HUB_TOKEN not in json.dumps([json.loads(p.read_text()) for p in datasets_dir(settings).glob("*/meta.json")])
    # The configured token (HF_TOKEN) serves when the request has none.
    settings.hf_token = SecretStr(HUB_TOKEN)
    assert from_hub(client, "orchard-test/gated-chats").status_code == 201


def test_from_hub_over_the_size_limit_fetches_nothing(
    client: TestClient, settings: Settings, data_hub: HubServer
) -> None:
    settings.max_dataset_mb = 0.001  # 1000 bytes: the two shards are larger together
    response = from_hub(client, CHATS)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large" and error["limit_bytes"] == 1000 and error["size_bytes"] > 1000
    assert "ORCHARD_MAX_DATASET_MB" in error["message"]
    assert fetched(data_hub) == []  # no HEAD, no GET of any file: the sizes come from the listing
    assert stored(settings) == []
    assert from_hub(client, CHATS, split="test").status_code == 201  # a small file still fits


def test_from_hub_faulty_rows_are_located_and_nothing_is_stored(
    client: TestClient, settings: Settings, data_hub: HubServer
) -> None:
    response = from_hub(client, "orchard-test/faulty")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_dataset" and error["error_count"] == 2
    assert [(e["file"], e["line"], e["field"]) for e in error["errors"]] == [
        ("train/part-1.jsonl", 2, None),  # a line cut short
        ("train/part-2.jsonl", 2, "messages[1].content"),  # an empty reply
    ]
    assert "not valid JSON" in error["errors"][0]["message"]
    assert "(first: line 2 of train/part-1.jsonl: " in error["message"]
    broken = from_hub(client, "orchard-test/broken")
    assert broken.status_code == 422
    assert [(e["file"], e["line"]) for e in broken.json()["error"]["errors"]] == [("train.parquet", None)]
    assert broken.json()["error"]["message"].startswith("train.parquet: ")
    assert stored(settings) == []
    assert client.get("/datasets").json()["datasets"] == []


def test_from_hub_unreachable_is_a_bad_gateway(client: TestClient, settings: Settings) -> None:
    response = from_hub(client, CHATS)  # settings point at 127.0.0.1:9, where nothing listens
    assert response.status_code == 502 and response.json()["error"]["code"] == "hub_unavailable"
    assert stored(settings) == []


def test_the_chat_pages_export_imports_as_chat_rows(client: TestClient, settings: Settings) -> None:
    """The JSON the Chat page exports (frontend/src/components/chat/exportChat.ts) becomes a chat dataset."""
    export = {
        "source": "orchard",
        "version": 1,
        "exported_at": "2026-12-01T10:00:00Z",
        "conversations": [
            {
                "title": "Fruit",
                "model": "tiny-llama",
                "parameters": {"temperature": 0.7},
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "A fruit?"},
                    {"role": "assistant", "content": "Apple."},
                ],
                "created_at": "2026-12-01T09:00:00Z",
                "updated_at": "2026-12-01T09:01:00Z",
            },
            {"title": "Sum", "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
        ],
    }
    response = upload(client, "orchard-chats-2026-12-01.json", json.dumps(export, indent=2))
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["shape"] == "chat" and info["num_examples"] == 2
    rows = [json.loads(line) for line in (datasets_dir(settings) / info["id"] / "data.jsonl").read_text().splitlines()]
    assert rows[1] == {"messages": export["conversations"][1]["messages"]}

    export["conversations"][1]["messages"][1]["role"] = "robot"  # located by the conversation's number
    bad = upload(client, "chats.json", json.dumps(export))
    assert bad.status_code == 422
    assert bad.json()["error"]["errors"][0]["line"] == 2
