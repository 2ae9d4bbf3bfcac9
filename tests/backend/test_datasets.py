"""Datasets: import (formats and shapes), located errors with nothing stored, statistics, trained-span preview."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings


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
