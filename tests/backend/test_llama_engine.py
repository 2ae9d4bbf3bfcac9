"""The llama.cpp engine: a GGUF file made here (a pretrained tiny Llama, exported by Orchard) loads on real llama.cpp,
chats through /chat and /v1 (streaming, stop sequences, cancel, usage) with the replies transformers gives on the
same weights, swaps with transformers models, unloads; and a machine without llama-cpp-python gets the clear error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backend.config import Settings
from backend.schemas.chat import SamplingParams
from backend.services import export_gguf, llama_engine
from backend.services.model_files import read_gguf
from tests.factories import make_model, pretrain
from tests.hub_server import HubServer
from tests.live_server import LiveServer, live_server

LLAMA_CPP = llama_engine.available()
if not LLAMA_CPP and os.environ.get("ORCHARD_LLAMA") == "1":  # CI: these tests must run, never skip
    raise RuntimeError("ORCHARD_LLAMA=1 but llama-cpp-python cannot be imported")
needs_llama_cpp = pytest.mark.skipif(
    not LLAMA_CPP, reason="llama-cpp-python is not installed (scripts/test adds it where a C++ compiler is found)"
)
HELLO = [{"role": "user", "content": "hello there"}]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pretrained tiny Llama (``hf``, safetensors), its f32 GGUF export (``gguf``, a folder holding it), a Hub
    repo of its quantizations (``repo``) and an untrained one's GGUF (``noise``)."""
    from transformers import AutoConfig, AutoTokenizer

    root = tmp_path_factory.mktemp("llama-engine")
    hf = pretrain(make_model(root / "tiny-hf", "llama", context_length=1024), steps=100)
    (root / "tiny-gguf").mkdir()
    gguf = root / "tiny-gguf" / "tiny.gguf"
    source = export_gguf.Source(
        folder=hf, config=AutoConfig.from_pretrained(hf), tokenizer=AutoTokenizer.from_pretrained(hf)
    )
    export_gguf.write_gguf(source, gguf, "f32", name="tiny")
    # a Hub repo of GGUF files, as people publish them: one file per quantization and a README
    repo = root / "hub-gguf"
    repo.mkdir()
    shutil.copy(gguf, repo / "tiny-f32.gguf")
    export_gguf.write_gguf(source, repo / "tiny-q8_0.gguf", "q8_0", name="tiny")
    (repo / "README.md").write_text("# tiny, in GGUF\n")
    # untrained: its replies almost never end early (EOS is one token in thousands), for tests of long replies
    noise = make_model(root / "noise-hf", "llama", context_length=1024)
    (root / "noise-gguf").mkdir()
    source = export_gguf.Source(
        folder=noise, config=AutoConfig.from_pretrained(noise), tokenizer=AutoTokenizer.from_pretrained(noise)
    )
    export_gguf.write_gguf(source, root / "noise-gguf" / "noise.gguf", "f32", name="noise")
    return {"hf": hf, "gguf": gguf.parent, "repo": repo, "noise": root / "noise-gguf"}


@pytest.fixture
def server(settings: Settings, made: dict[str, Path]) -> Iterator[LiveServer]:
    settings.ensure_dirs()
    for name in ("hf", "gguf", "noise"):
        (settings.models_path / f"tiny-{name}").symlink_to(made[name], target_is_directory=True)
    settings.llama_context = 512  # below the model's 1024: the setting caps it
    settings.chat_queue_size = 2
    with live_server(settings) as live:
        yield live


def load(server: LiveServer, model_id: str, **options: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/model/load", json={"model_id": model_id, "wait": True, **options}, timeout=90)
    assert response.status_code == 200, response.text
    metadata: dict[str, Any] = response.json()["result"]
    return metadata


def chat(server: LiveServer, **body: Any) -> dict[str, Any]:
    body = {"messages": HELLO, "max_new_tokens": 24, "temperature": 0, "stream": False, **body}
    response = httpx.post(f"{server.url}/chat", json=body, timeout=60)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


@needs_llama_cpp
def test_a_gguf_loads_on_llama_cpp_and_says_so(server: LiveServer, made: dict[str, Path]) -> None:
    metadata = load(server, "tiny-gguf")
    assert metadata["engine"] == "llama.cpp"
    assert metadata["architecture"] == "llama" and metadata["dtype"] == "f32"
    assert metadata["device"] == "cpu"
    assert metadata["context_length"] == 512  # ORCHARD_LLAMA_CONTEXT, under the model's own 1024
    assert metadata["has_chat_template"]
    summary = read_gguf(made["gguf"] / "tiny.gguf")
    assert metadata["num_parameters"] == summary.num_parameters
    # the weights as llama.cpp holds them (the file less its metadata), and the KV cache for its context
    held = metadata["measured_memory_gb"] * 1024**3 - llama_engine.kv_cache_bytes(summary, 512)
    assert 0.9 * summary.file.stat().st_size <= held <= summary.file.stat().st_size
    current = httpx.get(f"{server.url}/model/current").json()
    assert current["metadata"]["engine"] == "llama.cpp"


def test_the_kv_cache_is_counted_as_ollama_counts_it(made: dict[str, Path]) -> None:
    summary = read_gguf(made["gguf"] / "tiny.gguf")
    config = json.loads((made["hf"] / "config.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    assert (summary.block_count, summary.kv_heads, summary.key_length) == (
        config["num_hidden_layers"],
        config["num_key_value_heads"],
        head_dim,
    )
    want = 2 * config["num_hidden_layers"] * 512 * config["num_key_value_heads"] * head_dim * 2  # K and V, f16
    assert llama_engine.kv_cache_bytes(summary, 512) == want
    assert llama_engine.context_for(summary, 4096) == 1024 and llama_engine.context_for(summary, 512) == 512
    verdict = llama_engine.fit_verdict(summary, 512, "cpu", available_gb=0.001)
    assert not verdict.fits and "KV cache" in verdict.reason and "ORCHARD_LLAMA_CONTEXT" in verdict.reason


@needs_llama_cpp
def test_replies_match_transformers_on_the_same_weights(server: LiveServer) -> None:
    load(server, "tiny-hf")
    want = chat(server)
    load(server, "tiny-gguf")
    got = chat(server)
    assert got["model"] == "tiny-gguf"
    assert got["message"]["content"] == want["message"]["content"]  # f32 weights, greedy: the same reply
    assert got["usage"]["prompt_tokens"] == want["usage"]["prompt_tokens"]  # the same template and ids
    assert got["usage"]["completion_tokens"] == want["usage"]["completion_tokens"]
    assert got["finish_reason"] == want["finish_reason"]


@needs_llama_cpp
def test_v1_streams_with_usage_and_stops_before_a_stop_sequence(server: LiveServer) -> None:
    load(server, "tiny-gguf")
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    whole = api.chat.completions.create(model="tiny-gguf", messages=HELLO, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    text = whole.choices[0].message.content or ""
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    chunks = list(
        api.chat.completions.create(
            model="tiny-gguf",
            messages=HELLO,  # type: ignore[arg-type]
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    at = next(i for i in range(3, len(text) - 2) if text[i : i + 2].strip() and text[i : i + 2].isprintable())
    stop = text[at : at + 2]
    cut = api.chat.completions.create(model="tiny-gguf", messages=HELLO, max_tokens=24, temperature=0, stop=[stop])  # type: ignore[arg-type]
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


@needs_llama_cpp
def test_sampling_settings_and_seeds_hold_per_request(server: LiveServer) -> None:
    load(server, "tiny-gguf")
    body = {"max_new_tokens": 16, "temperature": 1.5, "top_k": 50, "top_p": 0.95}
    first = chat(server, **body, seed=7)["message"]["content"]
    assert chat(server, **body, seed=7)["message"]["content"] == first
    others = {chat(server, **body, seed=s)["message"]["content"] for s in (1, 2, 3)}
    assert len(others | {first}) > 1


def stream(server: LiveServer, events: list[tuple[float, str, dict[str, Any]]], **body: Any) -> None:
    """POST /chat streaming; every event (token, done) with the time it came and its data. Stops reading when
    ``leave`` (a threading.Event in ``body``) is set."""
    leave = body.pop("leave", None)
    body = {"messages": HELLO, "temperature": 0, **body}
    with httpx.stream("POST", f"{server.url}/chat", json=body, timeout=60) as response:
        assert response.status_code == 200
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:].strip()
            elif line.startswith("data: "):
                events.append((time.perf_counter(), name, json.loads(line[6:])))
                if leave is not None and leave.is_set():
                    return


@needs_llama_cpp
def test_concurrent_replies_share_the_batch_and_one_leaving_stops_only_its_own(server: LiveServer) -> None:
    """A long reply streams; three requests made meanwhile get their first tokens while it still runs, each with
    the text it gets alone; then the long one's client leaves and only its reply stops. An untrained model: its
    replies run to their length."""
    load(server, "tiny-noise")
    service = server.app.state.chat_service
    questions = ["hello there", "what is the cat", "one two three"]
    alone = [chat(server, messages=[{"role": "user", "content": q}])["message"]["content"] for q in questions]

    long: list[tuple[float, str, dict[str, Any]]] = []
    leave = threading.Event()
    body = {"max_new_tokens": 400, "leave": leave}
    reader = threading.Thread(target=stream, args=(server, long), kwargs=body, daemon=True)
    reader.start()
    while not long:
        time.sleep(0.002)
    others: list[list[tuple[float, str, dict[str, Any]]]] = [[] for _ in questions]
    askers = [
        threading.Thread(
            target=stream,
            args=(server, others[i]),
            kwargs={"messages": [{"role": "user", "content": q}], "max_new_tokens": 24},
        )
        for i, q in enumerate(questions)
    ]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(60)
    leave.set()
    reader.join(30)
    assert [events[-1][2]["message"]["content"] for events in others] == alone
    ended = long[-1][0]  # its done, or the last token its client read before leaving
    assert all(events[0][0] < ended for events in others)  # served beside it, not after it
    if long[-1][1] != "done":  # its client left while it ran: it stopped, and nothing else did
        time.sleep(0.5)
        cancelled = [done for done in service.recent if done.finish_reason == "cancelled"]
        assert len(cancelled) == 1 and cancelled[0].usage.completion_tokens < 400
    assert server.app.state.model_service.cache.in_use == 0


@needs_llama_cpp
def test_a_reply_whose_cache_cells_are_taken_waits_for_them(server: LiveServer) -> None:
    """The context's 512 cells are shared: a request that may need more than the running one leaves free waits in
    the queue until it ends, then runs (instead of failing midway for want of cells). An untrained model: its replies
    run to their length."""
    load(server, "tiny-noise")
    first: list[tuple[float, str, dict[str, Any]]] = []
    second: list[tuple[float, str, dict[str, Any]]] = []
    one = threading.Thread(target=stream, args=(server, first), kwargs={"max_new_tokens": 400})
    one.start()
    while not first:
        time.sleep(0.005)
    stream(server, second, max_new_tokens=300)
    one.join(30)
    assert first[-1][1] == "done" and second[-1][1] == "done"
    assert first[-1][2]["finish_reason"] == "length"  # the first reply ran for 400 tokens...
    assert second[0][0] >= first[-1][0]  # ...and the second's first token came after it ended


@needs_llama_cpp
def test_engines_swap_and_unload_gives_the_memory_back(server: LiveServer) -> None:
    assert load(server, "tiny-gguf")["engine"] == "llama.cpp"
    assert load(server, "tiny-hf")["engine"] == "transformers"
    on_transformers = load(server, "tiny-gguf", engine="transformers")  # dequantized, as where llama.cpp is missing
    assert on_transformers["engine"] == "transformers" and on_transformers["architecture"] == "LlamaForCausalLM"
    assert chat(server, max_new_tokens=4)["usage"]["completion_tokens"] > 0
    assert load(server, "tiny-gguf")["engine"] == "llama.cpp"
    # what needs PyTorch says so plainly for a GGUF model: fine-tuning
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    data = "\n".join(json.dumps(row) for _ in range(4)).encode()
    dataset = httpx.post(f"{server.url}/datasets", files={"file": ("d.jsonl", data)}).json()
    plan = httpx.post(f"{server.url}/training/plan", json={"dataset_id": dataset["id"]})
    assert plan.status_code == 422 and "cannot be fine-tuned" in plan.json()["error"]["message"], plan.text
    unloaded = httpx.post(f"{server.url}/model/unload").json()
    assert unloaded["status"] == "unloaded" and unloaded["model_id"] == "tiny-gguf"
    assert httpx.get(f"{server.url}/model/current").json()["metadata"] is None
    assert httpx.post(f"{server.url}/chat", json={"messages": HELLO, "stream": False}).status_code == 409


def test_llama_cpp_runs_gguf_files_only(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/model/load", json={"model_id": "tiny-hf", "engine": "llama.cpp", "wait": True}, timeout=60
    )
    want = 400 if LLAMA_CPP else 501
    assert response.status_code == want, response.text
    if LLAMA_CPP:
        assert "/export/gguf" in response.json()["error"]["message"]


@needs_llama_cpp
def test_a_gguf_that_does_not_fit_with_its_context_is_refused_unless_forced(
    settings: Settings, made: dict[str, Path]
) -> None:
    settings.ensure_dirs()
    (settings.models_path / "tiny-gguf").symlink_to(made["gguf"], target_is_directory=True)
    settings.memory_safety_margin_gb = 1e6  # nothing is free
    with live_server(settings) as live:
        refused = httpx.post(f"{live.url}/model/load", json={"model_id": "tiny-gguf", "wait": True}, timeout=60)
        assert refused.status_code == 507, refused.text
        error = refused.json()["error"]
        assert "KV cache" in error["message"] and error["context_length"] == 1024  # the model's own
        assert httpx.get(f"{live.url}/model/current").json()["metadata"] is None
        forced = httpx.post(
            f"{live.url}/model/load", json={"model_id": "tiny-gguf", "wait": True, "force": True}, timeout=60
        )
        assert forced.status_code == 200, forced.text


def test_without_llama_cpp_gguf_loads_on_transformers_and_asking_for_llama_cpp_says_how(
    made: dict[str, Path], tmp_path: Path
) -> None:
    """In a process where llama_cpp cannot be imported (as on a machine without a compiler)."""
    code = f"""
import sys; sys.modules["llama_cpp"] = None
from backend.config import Settings
from backend.schemas.chat import SamplingParams
from backend.errors import EngineUnavailableError
from backend.services.model_service import ModelService
service = ModelService(Settings(home_dir={str(tmp_path / "home")!r}, warmup=False))
loaded = service.load_local_model({str(made["gguf"])!r})
print(loaded.metadata.engine)
try:
    service.load_local_model({str(made["gguf"])!r}, engine="llama.cpp")
except EngineUnavailableError as exc:
    print(exc.status_code, exc.code)
    print(exc)
print(service.current.metadata.model_id)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHARD_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    engine, status, message, still = out.stdout.strip().splitlines()[-4:]
    assert engine == "transformers"
    assert status == "501 engine_unavailable"
    assert "C++ compiler" in message and "scripts/start" in message
    assert still == "tiny-gguf"  # the failed request kept the loaded model


def test_the_system_page_says_which_engines_are_here(client: Any) -> None:
    engines = {e["name"]: e for e in client.get("/config").json()["engines"]}
    assert engines["transformers"]["available"]
    assert engines["llama.cpp"]["available"] is LLAMA_CPP
    if not LLAMA_CPP:
        assert "C++ compiler" in engines["llama.cpp"]["hint"]


def test_a_hub_repo_of_gguf_files_downloads_the_file_chosen(settings: Settings, made: dict[str, Path]) -> None:
    repo = "orchard-test/tiny-GGUF"
    q8 = made["repo"] / "tiny-q8_0.gguf"
    with HubServer() as hub:
        hub.add_repo(repo, made["repo"])
        settings.hf_endpoint = hub.endpoint
        with live_server(settings) as live:
            info = httpx.get(f"{live.url}/model/info/{repo}").json()
            assert info["weight_format"] == "gguf" and info["memory"]["fits"], info["memory"]
            assert info["memory"]["reason"].startswith("its smallest file, tiny-q8_0.gguf, needs")
            # several quantizations and none chosen: 400 with each file and its size, before any byte
            unchosen = httpx.post(f"{live.url}/model/download", json={"model_id": repo, "wait": True}, timeout=60)
            assert unchosen.status_code == 400, unchosen.text
            error = unchosen.json()["error"]
            assert "gguf_file" in error["message"]
            assert {c["file"]: c["size"] for c in error["candidates"]} == {
                "tiny-f32.gguf": (made["repo"] / "tiny-f32.gguf").stat().st_size,
                "tiny-q8_0.gguf": q8.stat().st_size,
            }
            missing = httpx.get(f"{live.url}/model/check/{repo}", params={"gguf_file": "nope.gguf"})
            assert missing.status_code == 400 and "candidates" in missing.json()["error"]

            verdict = httpx.get(f"{live.url}/model/check/{repo}", params={"gguf_file": "tiny-q8_0.gguf"}).json()
            assert verdict["gguf_file"] == "tiny-q8_0.gguf" and verdict["files_total"] == 1
            assert verdict["bytes_total"] == q8.stat().st_size and verdict["fits"], verdict
            assert "KV cache" in verdict["memory_reason"]

            hub.reset_log()
            body = {"model_id": repo, "gguf_file": "tiny-q8_0.gguf", "wait": True}
            done = httpx.post(f"{live.url}/model/download", json=body, timeout=120)
            assert done.status_code == 200, done.text
            job = done.json()
            assert job["status"] == "ready" and job["path"].endswith("tiny-q8_0.gguf")
            metadata = job["result"]
            assert metadata["model_id"] == repo and metadata["source"] == "hub"
            assert metadata["engine"] == ("llama.cpp" if LLAMA_CPP else "transformers")
            fetched = {r.path.rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r.path}
            assert fetched == {"tiny-q8_0.gguf"}  # only the file chosen: not the other quantization, not the README
            reply = httpx.post(f"{live.url}/chat", json={"messages": HELLO, "max_new_tokens": 4, "stream": False})
            assert reply.status_code == 200 and reply.json()["model"] == repo


@needs_llama_cpp
def test_unloading_a_gguf_gives_its_memory_back(tmp_path: Path) -> None:
    """In a fresh process, a ~90 MB GGUF loaded on llama.cpp (every weight read by one forward) and unloaded, three
    times after a first round that pays the imports: the process's resident memory comes back each time."""
    from transformers import AutoConfig, AutoTokenizer

    wide = make_model(tmp_path / "wide", "llama", hidden_size=1024, num_layers=4)
    source = export_gguf.Source(
        folder=wide, config=AutoConfig.from_pretrained(wide), tokenizer=AutoTokenizer.from_pretrained(wide)
    )
    (tmp_path / "wide-gguf").mkdir()
    gguf = tmp_path / "wide-gguf" / "wide.gguf"
    export_gguf.write_gguf(source, gguf, "f16", name="wide")
    code = f"""
import json, os, psutil
from backend.config import Settings
from backend.schemas.chat import SamplingParams
from backend.services.model_service import ModelService
service = ModelService(Settings(home_dir={str(tmp_path / "home")!r}, warmup=False, memory_safety_margin_gb=0))
rss = lambda: psutil.Process(os.getpid()).memory_info().rss
cycles = []
for _ in range(4):
    before = rss()
    loaded = service.load_local_model({str(gguf.parent)!r})
    loaded.model.eval(list(range(1, 9)))  # one forward: every weight page is read
    held = rss() - before
    del loaded
    _, freed_gb = service.unload()
    cycles.append({{"held": held, "left": rss() - before, "freed_gb": freed_gb}})
print(json.dumps(cycles))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHARD_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    cycles = json.loads(out.stdout.strip().splitlines()[-1])[1:]  # the first also imports torch and llama.cpp
    size = gguf.stat().st_size
    print(f"file {size / 1e6:.0f} MB; per cycle: {cycles}")
    for cycle in cycles:
        assert cycle["held"] >= 0.8 * size, cycle  # the weights were in memory...
        assert cycle["left"] <= 0.15 * size, cycle  # ...and are gone after the unload


@needs_llama_cpp
def test_the_tokenizer_decodes_as_llama_cpp_does(made: dict[str, Path]) -> None:
    """Decoding with cached pieces gives llama-cpp-python's own detokenize, special tokens and a leading BOS too."""
    import random

    llm, tokenizer, _ = llama_engine.load(made["gguf"] / "tiny.gguf", n_ctx=256, device="cpu")
    try:
        rng = random.Random(0)
        for trial in range(300):
            ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randrange(1, 30))]
            if trial % 5 == 0:
                ids[0] = llm.token_bos()
            for special in (False, True):
                want = bytes(llm.detokenize(ids, special=special)).decode("utf-8", errors="replace")
                assert tokenizer.decode(ids, skip_special_tokens=not special) == want, ids
    finally:
        llm.close()


Opener = Callable[..., tuple[Any, Any, Any]]


@pytest.fixture
def engine(made: dict[str, Path]) -> Iterator[Opener]:
    """Opens the tiny GGUF as Orchard does (``n_ctx``, ``sequences``): ``(its LlamaDecoder, its tokenizer, plain
    llama-cpp-python on the same file as the reference)``; all closed after the test."""
    from llama_cpp import Llama

    opened: list[Any] = []

    def open_(n_ctx: int = 512, sequences: int = 1) -> tuple[Any, Any, Any]:
        path = made["gguf"] / "tiny.gguf"
        llm, tokenizer, _ = llama_engine.load(path, n_ctx=n_ctx, device="cpu", sequences=sequences)
        decoder = llama_engine.LlamaDecoder(llm)
        plain = Llama(model_path=str(path), n_ctx=n_ctx, verbose=False)
        opened.extend([decoder, llm, plain])
        return decoder, tokenizer, plain

    yield open_
    for thing in opened:
        thing.close()


class _Drive:
    """Drives a :class:`LlamaDecoder` as the chat service does: rows join, step, take their tokens, leave."""

    def __init__(self, decoder: Any, params: Any, prompts: list[list[int]], n: int | list[int]) -> None:
        self.decoder, self.params, self.prompts = decoder, params, prompts
        self.n = n if isinstance(n, list) else [n] * len(prompts)  # each prompt's reply length
        self.which: dict[int, int] = {}
        self.out: dict[int, list[int]] = {i: [] for i in range(len(prompts))}

    def join(self, *which: int, params: Any = None) -> None:
        rows = []
        for i in which:
            row = self.decoder.new_row(params or self.params, self.prompts[i])
            row.reserve = len(self.prompts[i]) + self.n[i]
            self.which[id(row)] = i
            rows.append(row)
        for row, token in zip(rows, self.decoder.prefill(rows), strict=True):
            self._take(row, token)

    def _take(self, row: Any, token: int) -> None:
        self.out[self.which[id(row)]].append(token)
        row.ids.append(token)
        row.next_input = token

    def step(self, times: int = 1) -> None:
        for _ in range(times):
            if not self.decoder.size:
                return
            for row, token in zip(list(self.decoder.rows), self.decoder.step(), strict=True):
                self._take(row, token)
            self.decoder.leave([row for row in self.decoder.rows if self._done(row)])

    def _done(self, row: Any) -> bool:
        i = self.which[id(row)]
        return len(self.out[i]) >= self.n[i]

    def leave(self, i: int) -> None:
        self.decoder.leave([row for row in self.decoder.rows if self.which[id(row)] == i])


def _plain(llm: Any, prompt: list[int], n: int, **sampling: Any) -> list[int]:
    """llama-cpp-python's own generate, on a fresh cache: the reference."""
    llm.reset()
    tokens = []
    for token in llm.generate(prompt, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, reset=False, **sampling):
        tokens.append(token)
        if len(tokens) == n:
            return tokens
    return tokens


@needs_llama_cpp
def test_replies_decoded_together_are_the_ones_llama_cpp_gives_each_alone(engine: Opener) -> None:
    """Four prompts of different lengths join and leave a running batch at different steps (one cancelled midway):
    every row's greedy tokens are the ones llama-cpp-python's own generate gives that prompt alone."""
    decoder, tokenizer, plain = engine(n_ctx=512, sequences=4)
    texts = ["hello there", "the cat sat on the mat and looked at", "one two three four five", "what is"]
    prompts = [tokenizer.encode(text) for text in texts]
    n = 24
    want = [_plain(plain, prompt, n, temp=0.0) for prompt in prompts]
    assert decoder.max_rows == 4 and decoder.cells == 512
    drive = _Drive(decoder, SamplingParams(temperature=0), prompts, n)
    drive.join(0)
    drive.step(3)
    drive.join(1, 2)  # two newcomers prefilled together while row 0 runs
    assert decoder.size == 3
    drive.step(5)
    drive.leave(0)  # a client leaves: only its row goes
    drive.join(3)
    while decoder.size:
        drive.step()
    assert len(drive.out[0]) == 9 and drive.out[0] == want[0][:9]
    for i in (1, 2, 3):
        assert drive.out[i] == want[i], (texts[i], tokenizer.decode(drive.out[i]), tokenizer.decode(want[i]))


@needs_llama_cpp
def test_a_prompt_reuses_the_cache_it_shares_and_idle_caches_make_room(engine: Opener) -> None:
    """The next turn of a conversation evaluates only what its cached prefix lacks and replies as if from a fresh
    cache; a newcomer that needs the cells an idle sequence holds gets them, and fills its whole reservation."""
    decoder, tokenizer, plain = engine(n_ctx=256, sequences=2)
    assert decoder.cells == 256
    greedy = SamplingParams(temperature=0)
    first = tokenizer.encode("hello there")
    turn = _Drive(decoder, greedy, [first], 10)
    turn.join(0)
    turn.step(20)
    reply = turn.out[0]
    assert decoder.evaluated == len(first)

    second = first + reply + tokenizer.encode(" and then", add_special_tokens=False)
    before = decoder.evaluated
    follow = _Drive(decoder, greedy, [second], 12)
    follow.join(0)
    follow.step(20)
    # the first turn's prompt and the 9 reply tokens it fed are cached (its last token was never fed)
    assert decoder.evaluated - before == len(second) - (len(first) + len(reply) - 1)
    assert follow.out[0] == _plain(plain, second, 12, temp=0.0)

    other = tokenizer.encode("one two three four five")
    long = _Drive(decoder, greedy, [other], 256 - len(other))  # every cell: the idle caches must give theirs
    long.join(0)
    assert decoder.free_cells() == 0
    long.step(300)
    assert long.out[0] == _plain(plain, other, 256 - len(other), temp=0.0)

    before = decoder.evaluated
    again = _Drive(decoder, greedy, [second], 4)
    again.join(0)
    assert decoder.evaluated - before in (len(second), len(second) - 1)  # its cache was dropped for the long one
    again.step(10)


@needs_llama_cpp
def test_seeded_sampling_is_the_same_alone_and_beside_others(engine: Opener) -> None:
    """A seeded, sampled row gives the tokens llama-cpp-python samples with that seed, whoever shares its batch."""
    decoder, tokenizer, plain = engine(n_ctx=512, sequences=3)
    prompt = tokenizer.encode("hello there")
    params = SamplingParams(temperature=1.2, top_k=40, top_p=0.9, seed=11)
    plain.set_seed(11)
    want = _plain(plain, prompt, 16, temp=1.2, top_k=40, top_p=0.9)
    drive = _Drive(decoder, SamplingParams(temperature=0.8, seed=3), [tokenizer.encode("what is"), prompt, prompt], 16)
    drive.join(0, 1)  # row 1: the same prompt as the seeded row, sampled with other settings
    drive.step(2)
    drive.join(2, params=params)
    while decoder.size:
        drive.step()
    assert drive.out[2] == want
    assert drive.out[1] != want


@needs_llama_cpp
def test_a_prefill_that_fails_leaves_the_batch_as_it_was(engine: Opener) -> None:
    """llama.cpp refuses a token id past its vocabulary: the newcomer leaves, the running row goes on unharmed."""
    decoder, tokenizer, plain = engine(n_ctx=512, sequences=2)
    prompt = tokenizer.encode("hello there")
    drive = _Drive(decoder, SamplingParams(temperature=0), [prompt, [*prompt, tokenizer.vocab_size + 5]], 16)
    drive.join(0)
    drive.step(3)
    with pytest.raises(RuntimeError, match="llama_decode"):
        drive.join(1)
    assert decoder.size == 1 and decoder.free_cells() == 512 - (len(prompt) + 16)
    while decoder.size:
        drive.step()
    assert drive.out[0] == _plain(plain, prompt, 16, temp=0.0)


@needs_llama_cpp
def test_prompts_that_share_a_start_share_its_cache(engine: Opener) -> None:
    """Two users with the same system prompt: the second row takes the first one's cells for the shared start (while
    the first still runs) and evaluates only the rest; both replies are the ones llama-cpp-python gives alone."""
    decoder, tokenizer, plain = engine(n_ctx=512, sequences=3)
    system = "You answer in one sentence, politely, about cats and mats and the weather. "
    prompts = [tokenizer.encode(system + question) for question in ("hello there", "what is the cat")]
    common = next(i for i, (a, b) in enumerate(zip(*prompts, strict=False)) if a != b)
    assert common > 10
    drive = _Drive(decoder, SamplingParams(temperature=0), prompts, 16)
    drive.join(0)
    drive.step(2)
    before = decoder.evaluated
    drive.join(1)
    assert decoder.evaluated - before == len(prompts[1]) - common
    while decoder.size:
        drive.step()
    for i in (0, 1):
        assert drive.out[i] == _plain(plain, prompts[i], 16, temp=0.0)
    # and after both left, a third user's prompt with that start reuses it again
    before = decoder.evaluated
    third = tokenizer.encode(system + "one two three")
    again = _Drive(decoder, SamplingParams(temperature=0), [third], 8)
    again.join(0)
    assert decoder.evaluated - before <= len(third) - common
    while decoder.size:
        again.step()
    assert again.out[0] == _plain(plain, third, 8, temp=0.0)


@needs_llama_cpp
def test_cells_a_shared_start_holds_count_once_and_every_cell_can_be_filled(engine: Opener) -> None:
    """Three users on one system prompt: the cells of the start they share count once, so the third may reserve
    what counting them for each user would refuse; filled to the last of the context's cells, every reply is still
    the one llama-cpp-python gives alone (a miscount would make a decode run out of cells)."""
    decoder, tokenizer, plain = engine(n_ctx=256, sequences=3)
    system = "You answer in one sentence, politely, about cats and mats and the weather. " * 2
    prompts = [tokenizer.encode(system + question) for question in ("hello there", "what is the cat", "one two")]
    shared = [llama_engine._common_prefix(prompts[0], p) for p in prompts[1:]]
    assert min(shared) > 20 and all(llama_engine._common_prefix(prompts[1], prompts[2]) <= s for s in shared)
    drive = _Drive(decoder, SamplingParams(temperature=0), prompts, [20, 20, 0])
    drive.join(0)
    drive.step(2)
    drive.join(1)
    held = len(prompts[0]) + 20 + len(prompts[1]) - shared[0] + 20  # reserved: the shared start once
    assert decoder.free_cells() == 256 - held
    drive.n[2] = decoder.free_cells() - (len(prompts[2]) - shared[1])  # the third row takes every cell left
    assert len(prompts[2]) + drive.n[2] > decoder.free_cells()  # what counting the start for each user refuses
    drive.join(2)
    assert decoder.free_cells() == 0
    while decoder.size:
        drive.step()
    for i in (0, 1, 2):
        assert drive.out[i] == _plain(plain, prompts[i], drive.n[i], temp=0.0), i
