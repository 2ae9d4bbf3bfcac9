"""Chat: the official ``openai`` client against our /v1 on a real socket, /chat's events, stops, cancel, queue.

The tiny models' replies are noise; these tests check the mechanics: order of events, usage, finish reasons,
stop sequences, disconnects, the queue's bound, and the model cache's protection while generating.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backend.config import Settings
from backend.services.chat_service import ChatService, _Detokenizer
from tests.factories import make_model, make_tokenizer
from tests.live_server import LiveServer, live_server

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def chat_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama with a 2048-token context (long generations for the queue tests) and tiny-gpt2 (no template)."""
    root = tmp_path_factory.mktemp("chat-models")
    make_model(root / "tiny-llama", "llama", context_length=2048)
    make_model(root / "tiny-gpt2", "gpt2")
    return root


@pytest.fixture
def server(settings: Settings, chat_models: Path) -> Iterator[LiveServer]:
    settings.ensure_dirs()
    for name in ("tiny-llama", "tiny-gpt2"):
        (settings.models_path / name).symlink_to(chat_models / name, target_is_directory=True)
    settings.chat_queue_size = 1
    with live_server(settings) as live:
        yield live


def load(server: LiveServer, model: str = "tiny-llama") -> None:
    response = httpx.post(f"{server.url}/model/upload", params={"model_path": model}, timeout=60)
    assert response.status_code == 200, response.text


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def chat_service(server: LiveServer) -> ChatService:
    service: ChatService = server.app.state.chat_service
    return service


def hold_generations(service: ChatService) -> tuple[threading.Event, threading.Event]:
    """Make each generation wait, once its turn comes, until the test sets ``gate``; ``started`` tells it came."""
    started, gate = threading.Event(), threading.Event()
    original = service._admit

    def held(decoder: Any, seqs: Any) -> Any:
        started.set()
        gate.wait(30)
        return original(decoder, seqs)

    service._admit = held  # type: ignore[method-assign]
    return started, gate


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    events, name = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
            name = "message"
    return events


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_openai_client_non_streaming_and_streaming_agree(server: LiveServer) -> None:
    load(server)
    api = client(server)
    whole = api.chat.completions.create(model="tiny-llama", messages=HELLO, max_tokens=12, temperature=0)
    assert whole.object == "chat.completion"
    assert whole.model == "tiny-llama"
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None
    assert whole.usage.prompt_tokens > 0
    assert 0 < whole.usage.completion_tokens <= 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    chunks = list(
        api.chat.completions.create(
            model="tiny-llama",
            messages=HELLO,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # usage comes last, alone
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content  # greedy: the same reply either way


def test_openai_completions_and_models(server: LiveServer) -> None:
    api = client(server)
    assert api.models.list().data == []
    load(server)
    assert [m.id for m in api.models.list().data] == ["tiny-llama"]
    whole = api.completions.create(model="tiny-llama", prompt="The quick brown", max_tokens=5, temperature=0)
    assert whole.object == "text_completion"
    assert whole.usage is not None and whole.usage.completion_tokens <= 5
    parts = list(
        api.completions.create(model="tiny-llama", prompt="The quick brown", max_tokens=5, temperature=0, stream=True)
    )
    assert "".join(p.choices[0].text for p in parts if p.choices) == whole.choices[0].text
    echoed = api.completions.create(model="tiny-llama", prompt="The quick", max_tokens=3, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith("The quick")


def test_an_empty_prompt_for_a_model_without_bos_is_a_400(server: LiveServer) -> None:
    load(server, "tiny-gpt2")  # GPT-2 adds no BOS: an empty prompt is no tokens at all
    with pytest.raises(openai.BadRequestError) as empty:
        client(server).completions.create(model="tiny-gpt2", prompt="", max_tokens=3)
    assert "empty" in str(empty.value)


def test_openai_errors_say_how_to_load_a_model(server: LiveServer) -> None:
    api = client(server)
    with pytest.raises(openai.ConflictError) as no_model:
        api.chat.completions.create(model="tiny-llama", messages=HELLO)
    body = no_model.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_loaded" and body["type"] and "param" in body
    assert "/model/upload" in body["message"]
    assert no_model.value.response.headers["x-should-retry"] == "false"

    load(server)
    with pytest.raises(openai.ConflictError) as wrong:
        api.chat.completions.create(model="some-other-model", messages=HELLO)
    assert "'tiny-llama' is" in str(wrong.value)

    with pytest.raises(openai.UnprocessableEntityError) as bad:
        api.chat.completions.create(model="tiny-llama", messages=HELLO, temperature=5)
    assert isinstance(bad.value.body, dict) and bad.value.body["code"] == "validation_error"


def test_chat_streams_tokens_then_usage(server: LiveServer) -> None:
    load(server)
    body = {"messages": [{"role": "system", "content": "Be brief."}, *HELLO], "max_new_tokens": 16, "temperature": 0}
    with httpx.stream("POST", f"{server.url}/chat", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"token"}
    done = events[-1][1]
    assert done["message"] == {"role": "assistant", "content": "".join(str(d["text"]) for _, d in events[:-1])}
    usage = done["usage"]
    assert isinstance(usage, dict)
    assert usage["completion_tokens"] == 16 or done["finish_reason"] == "stop"
    assert usage["time_to_first_token_ms"] is not None and usage["time_to_first_token_ms"] > 0
    assert usage["prompt_tokens"] > 0

    whole = httpx.post(f"{server.url}/chat", json={**body, "stream": False}, timeout=60).json()
    assert whole["message"] == done["message"]


def test_sampling_with_a_seed_repeats(server: LiveServer) -> None:
    load(server)
    body = {"messages": HELLO, "max_new_tokens": 16, "temperature": 1.0, "top_k": 50, "stream": False}
    first = httpx.post(f"{server.url}/chat", json={**body, "seed": 7}, timeout=60).json()["message"]["content"]
    again = httpx.post(f"{server.url}/chat", json={**body, "seed": 7}, timeout=60).json()["message"]["content"]
    others = {
        httpx.post(f"{server.url}/chat", json={**body, "seed": s}, timeout=60).json()["message"]["content"]
        for s in (1, 2, 3)
    }
    assert first == again
    assert len(others | {first}) > 1


def test_stop_sequence_ends_the_reply_before_it(server: LiveServer) -> None:
    load(server)
    body = {"messages": HELLO, "max_new_tokens": 40, "temperature": 0, "stream": False}
    full = httpx.post(f"{server.url}/chat", json=body, timeout=60).json()["message"]["content"]
    printable = [
        i for i in range(4, len(full) - 2) if full[i : i + 2].isprintable() and "\ufffd" not in full[i : i + 2]
    ]
    assert printable, f"the greedy reply has no printable pair to stop at: {full!r}"
    at = printable[0]
    stop = full[at : at + 2]
    cut = httpx.post(f"{server.url}/chat", json={**body, "stop": [stop]}, timeout=60).json()
    assert cut["message"]["content"] == full[: full.index(stop)]
    assert cut["finish_reason"] == "stop"


def test_length_limit_and_context_window(server: LiveServer) -> None:
    load(server)
    reply = httpx.post(
        f"{server.url}/chat", json={"messages": HELLO, "max_new_tokens": 3, "temperature": 0, "stream": False}
    ).json()
    assert reply["finish_reason"] in ("length", "stop")
    assert reply["usage"]["completion_tokens"] <= 3
    too_long = httpx.post(
        f"{server.url}/chat", json={"messages": [{"role": "user", "content": "word " * 3000}], "stream": False}
    )
    assert too_long.status_code == 400
    assert "2048" in too_long.json()["error"]["message"]


def test_model_without_chat_template_uses_the_fallback(server: LiveServer) -> None:
    load(server, "tiny-gpt2")
    reply = httpx.post(f"{server.url}/chat", json={"messages": HELLO, "max_new_tokens": 4, "stream": False}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "tiny-gpt2"


def _start_long_stream(server: LiveServer, started: threading.Event, tokens: list[str]) -> threading.Thread:
    def run() -> None:
        body = {"messages": HELLO, "max_new_tokens": 1900, "temperature": 0}
        with httpx.stream("POST", f"{server.url}/chat", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    tokens.append(line)
                    started.set()
                    if len(tokens) >= 3:
                        return  # leaving the block closes the connection mid-generation

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_client_disconnect_stops_generation(server: LiveServer) -> None:
    load(server)
    service = chat_service(server)
    started, tokens = threading.Event(), []
    thread = _start_long_stream(server, started, tokens)
    assert started.wait(30)
    thread.join(10)
    wait_until(lambda: service.active == 0, timeout=10)
    assert server.app.state.model_service.cache.in_use == 0
    ended = service.recent[-1]
    assert ended.finish_reason == "cancelled"
    assert ended.usage.completion_tokens < 1900
    print(f"disconnect after {len(tokens)} events: stopped at {ended.usage.completion_tokens} of 1900 tokens")


def test_queue_overflow_gets_503_with_retry_after(server: LiveServer) -> None:
    load(server)
    service = chat_service(server)
    service.queue.slots = 1  # one generating and ORCHARD_CHAT_QUEUE_SIZE waiting: the bound this test is about
    _started, gate = hold_generations(service)
    body = {"messages": HELLO, "max_new_tokens": 2, "stream": False}
    results: list[int] = []
    first = threading.Thread(
        target=lambda: results.append(httpx.post(f"{server.url}/chat", json=body, timeout=60).status_code)
    )
    second = threading.Thread(
        target=lambda: results.append(httpx.post(f"{server.url}/chat", json=body, timeout=60).status_code)
    )
    first.start()
    wait_until(lambda: service.active == 1 and service.queue.waiting == 0)  # running, held
    second.start()
    wait_until(lambda: service.queue.waiting == 1)
    overflow = httpx.post(f"{server.url}/chat", json=body, timeout=60)
    assert overflow.status_code == 503
    assert overflow.headers["retry-after"] == "2"
    assert overflow.json()["error"]["code"] == "server_busy"
    openai_overflow = httpx.post(
        f"{server.url}/v1/chat/completions", json={"model": "tiny-llama", "messages": HELLO}, timeout=60
    )
    assert openai_overflow.status_code == 503 and openai_overflow.json()["error"]["type"]
    gate.set()
    first.join(30)
    second.join(30)
    assert results == [200, 200]  # the two in line were served, in order
    print("queue: 2 admitted (1 running + 1 waiting at size 1), 2 refused with 503")


def test_cancel_while_waiting_leaves_the_line(server: LiveServer) -> None:
    load(server)
    service = chat_service(server)
    _started, gate = hold_generations(service)
    body = {"messages": HELLO, "max_new_tokens": 2, "stream": False}
    first = threading.Thread(target=lambda: httpx.post(f"{server.url}/chat", json=body, timeout=60))
    first.start()
    wait_until(lambda: service.active == 1)
    with httpx.stream("POST", f"{server.url}/chat", json={**body, "stream": True}, timeout=60) as waiting:
        assert waiting.status_code == 200
        wait_until(lambda: service.queue.waiting == 1)
    # The client went away while waiting: it leaves the line and gives the model back at once.
    wait_until(lambda: service.queue.waiting == 0 and service.active == 1)
    assert server.app.state.model_service.cache.in_use == 1
    gate.set()
    first.join(30)
    wait_until(lambda: service.active == 0 and server.app.state.model_service.cache.in_use == 0)


def test_unload_or_replace_while_generating_is_refused(server: LiveServer) -> None:
    load(server)
    service = chat_service(server)
    started, gate = hold_generations(service)
    body = {"messages": HELLO, "max_new_tokens": 4, "stream": False}
    reply: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: reply.append(httpx.post(f"{server.url}/chat", json=body, timeout=60)))
    thread.start()
    assert started.wait(10)
    unload = httpx.post(f"{server.url}/model/unload")
    assert unload.status_code == 409 and unload.json()["error"]["code"] == "model_busy"
    replace = httpx.post(f"{server.url}/model/upload", params={"model_path": "tiny-gpt2"}, timeout=60)
    assert replace.status_code == 409
    assert httpx.get(f"{server.url}/model/current").json()["metadata"]["model_id"] == "tiny-llama"
    gate.set()
    thread.join(30)
    assert reply[0].status_code == 200
    wait_until(lambda: service.active == 0)
    assert httpx.post(f"{server.url}/model/unload").json()["status"] == "unloaded"


def test_detokenizer_holds_back_a_stop_split_across_tokens() -> None:
    tokenizer = make_tokenizer()
    ids = tokenizer("hello world. STOP and more", add_special_tokens=False)["input_ids"]
    detok = _Detokenizer(tokenizer, ["STOP"])
    emitted = ""
    for token in ids:
        emitted += detok.add([token])
        if detok.stopped:
            break
    emitted += detok.flush()
    assert emitted == "hello world. "
    assert detok.stopped


def test_model_is_freed_after_chatting_and_unloading(server: LiveServer) -> None:
    """Nothing of the chat machinery (worker thread, queue, recent results) keeps the unloaded model alive."""
    import gc
    import weakref

    load(server)
    model = weakref.ref(server.app.state.model_service.current.model)
    reply = httpx.post(f"{server.url}/chat", json={"messages": HELLO, "max_new_tokens": 3, "stream": False})
    assert reply.status_code == 200
    wait_until(lambda: chat_service(server).active == 0)
    assert httpx.post(f"{server.url}/model/unload").json()["status"] == "unloaded"
    gc.collect()
    assert model() is None


def test_client_leaving_a_whole_reply_request_stops_generation(server: LiveServer) -> None:
    load(server)
    service = chat_service(server)
    body = {"messages": HELLO, "max_new_tokens": 1900, "temperature": 0, "stream": False}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/chat", json=body, timeout=httpx.Timeout(10, read=0.3))
    wait_until(lambda: service.active == 0, timeout=10)
    assert service.recent[-1].finish_reason == "cancelled"
    assert service.recent[-1].usage.completion_tokens < 1900
