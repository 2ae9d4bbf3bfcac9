"""Orchard's benchmarks: each figure against the plain library doing the same work, in the same run.

Run: ``scripts/bench`` (or ``uv run python -m bench.run``); ``--quick`` for fewer repetitions and the small
model only; ``--only load,generation`` for some sections. Writes bench/RESULTS.md. Targets are reported, not
enforced: a missed target is a finding, not a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil

from bench.harness import ROOT, LatencyProbe, free_port, median, percentile, run_python, server, wait_for
from bench.models import model_path, parameter_count

if TYPE_CHECKING:
    from backend.services.rag_store import ChunkStore

GB = 1024**3  # Orchard reports memory in GiB (its "GB"), so the benchmark does too
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Row:
    metric: str
    ours: str
    plain: str
    ratio: str
    target: str
    holds: bool | None  # None: no target for this row

    def cells(self) -> list[str]:
        verdict = "" if self.holds is None else ("yes" if self.holds else "**no**")
        return [self.metric, self.ours, self.plain, self.ratio, self.target, verdict]


@dataclass
class Section:
    title: str
    method: str
    rows: list[Row]


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms"


# --------------------------------------------------------------------------- 1. load


def plain_load(path: Path, dtype: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    AutoTokenizer.from_pretrained(path)
    elapsed = time.perf_counter() - started
    del model
    return elapsed


def api_load(client: httpx.Client, path: Path, dtype: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post("/model/upload", params={"model_path": str(path), "dtype": dtype})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()["metadata"]


def bench_load(work: Path, configs: list[tuple[str, str]], reps: int) -> Section:
    rows = []
    import torch  # noqa: F401 - the plain side runs in a warm process, as the server's does
    import transformers  # noqa: F401

    with server(work / "load") as orchard, orchard.client() as client:
        wait_for(lambda: client.get("/health").json()["warmup"] == "done", timeout=120, what="warm-up")
        for size, dtype in configs:
            path = model_path(size, dtype)
            plain_load(path, dtype)  # page cache warm for both sides
            ours, plain = [], []
            for _ in range(reps):
                ours.append(api_load(client, path, dtype)[0])
                client.post("/model/unload").raise_for_status()
                plain.append(plain_load(path, dtype))
            ratio = median(ours) / median(plain)
            log(f"load {size} {dtype}: ours {median(ours):.3f}s plain {median(plain):.3f}s ratio {ratio:.2f}")
            rows.append(
                Row(
                    f"load {size} {dtype} (warm)",
                    fmt_s(median(ours)),
                    fmt_s(median(plain)),
                    f"{ratio:.2f}×",
                    "≤ 1.10×",
                    ratio <= 1.10,
                )
            )

    # First load after start: spawn the server and load at once, vs a cold script doing the same.
    path = model_path(configs[0][0], configs[0][1])
    dtype = configs[0][1]
    cold_ours, cold_plain = [], []
    code = (
        "import torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
        f"AutoModelForCausalLM.from_pretrained({str(path)!r}, dtype=torch.{dtype}); "
        f"AutoTokenizer.from_pretrained({str(path)!r})"
    )
    for i in range(max(2, reps // 2)):
        with server(work / f"cold-{i}") as orchard, orchard.client() as client:
            api_load(client, path, dtype)
            cold_ours.append(time.perf_counter() - orchard.started_at)
        cold_plain.append(run_python(code))
    ratio = median(cold_ours) / median(cold_plain)
    log(f"first load after start: ours {median(cold_ours):.2f}s, cold script {median(cold_plain):.2f}s")
    rows.append(
        Row(
            f"start + first load {configs[0][0]} {dtype}",
            fmt_s(median(cold_ours)),
            fmt_s(median(cold_plain)),
            f"{ratio:.2f}×",
            "",
            None,
        )
    )
    return Section(
        "Load",
        "Time from `POST /model/upload?model_path=` to its answer (the model and tokenizer ready in the cache), vs "
        "`AutoModelForCausalLM.from_pretrained` + `AutoTokenizer.from_pretrained` in a warm process, at the dtype "
        f"the model is saved in; median of {reps}. The last row spawns the server and loads at once (interpreter, "
        "imports, warm-up included) vs a fresh `python -c` script doing the same load.",
        rows,
    )


# --------------------------------------------------------------------------- 2. responsiveness


@contextmanager
def hub_process(repo_id: str, folder: Path, throttle: int | None = None) -> Iterator[str]:
    args = [sys.executable, "-m", "bench.hub_process", repo_id, str(folder)]
    if throttle:
        args.append(str(throttle))
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


def probe_stats(latencies: list[float]) -> tuple[float, float]:
    return percentile(latencies, 50), percentile(latencies, 99)


def bench_responsiveness(work: Path, big: tuple[str, str], small: tuple[str, str]) -> Section:
    rows = []
    big_path, small_path = model_path(*big), model_path(*small)
    size = sum(f.stat().st_size for f in small_path.glob("*.safetensors"))
    with (
        hub_process("bench/small", small_path, throttle=int(size / 6)) as endpoint,  # about 6 s of download
        server(work / "resp", hub=endpoint) as orchard,
        orchard.client() as client,
    ):
        wait_for(lambda: client.get("/health").json()["warmup"] == "done", timeout=120, what="warm-up")
        health = orchard.url + "/model/health"
        with LatencyProbe(health) as idle:
            time.sleep(3)
        loads: list[float] = []
        during_loads: list[float] = []
        while not loads or sum(loads) < 3:  # at least 3 s of loading, so p99 has samples behind it
            with LatencyProbe(health) as probe:
                loads.append(api_load(client, big_path, big[1])[0])
            during_loads += probe.latencies
            client.post("/model/unload").raise_for_status()
        seconds = median(loads)
        job = client.post("/model/download", json={"model_id": "bench/small", "load": False}).json()
        with LatencyProbe(health) as downloading:
            wait_for(
                lambda: client.get(f"/model/jobs/{job['id']}").json()["status"] == "ready",
                timeout=120,
                what="download",
            )
    idle_p50, idle_p99 = probe_stats(idle.latencies)
    for name, latencies, note in (
        ("during a load", during_loads, f"{len(loads)} loads of {big[0]} {big[1]}, {seconds:.2f} s each"),
        ("during a download", downloading.latencies, "throttled to ~6 s"),
    ):
        p50, p99 = probe_stats(latencies)
        log(f"health {name}: p50 {p50:.1f} p99 {p99:.1f} ms over {len(latencies)} (idle p99 {idle_p99:.1f})")
        rows.append(
            Row(
                f"`/model/health` p99 {name} ({note}, n={len(latencies)})",
                fmt_ms(p99),
                fmt_ms(idle_p99),
                f"{p99 / idle_p99:.1f}×",
                "≤ 50 ms",
                p99 <= 50,
            )
        )
        rows.append(
            Row(f"`/model/health` p50 {name}", fmt_ms(p50), fmt_ms(idle_p50), f"{p50 / idle_p50:.1f}×", "", None)
        )
    return Section(
        "Responsiveness",
        "Latency of `GET /model/health`, polled every 10 ms from another thread of the benchmark process over HTTP, "
        "while the server loads a model and while it downloads one from a Hub-compatible server in a third process, "
        "vs the same server idle (the 'plain' column).",
        rows,
    )


# --------------------------------------------------------------------------- 3. memory truth


def bench_memory(work: Path, configs: list[tuple[str, str]]) -> Section:
    rows = []
    for size, dtype in configs:
        path = model_path(size, dtype)
        with server(work / f"mem-{size}-{dtype}") as orchard, orchard.client() as client:
            wait_for(lambda c=client: c.get("/health").json()["warmup"] == "done", timeout=120, what="warm-up")
            time.sleep(0.5)
            before = orchard.rss()
            _, meta = api_load(client, path, dtype)
            # One token through every layer, so memory-mapped weights are really resident.
            client.post(
                "/chat", json={"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 1, "stream": False}
            ).raise_for_status()
            loaded = orchard.rss()
            client.post("/model/unload").raise_for_status()
            time.sleep(0.5)
            after = orchard.rss()
        measured = (loaded - before) / GB
        estimate = meta["estimated_memory_gb"]
        error = (estimate - measured) / measured
        returned = (after - before) / before
        log(
            f"memory {size} {dtype}: estimate {estimate:.3f} GB, measured {measured:.3f} GB ({error:+.1%}); "
            f"after unload {after / GB:.3f} GB vs {before / GB:.3f} GB before"
        )
        rows.append(
            Row(
                f"estimate vs resident, {size} {dtype} ({parameter_count(path) / 1e6:.0f}M params)",
                f"{estimate:.3f} GB",
                f"{measured:.3f} GB",
                f"{error:+.1%} ({(estimate - measured):+.3f} GB)",
                "±10 %",
                abs(error) <= 0.10,
            )
        )
        rows.append(
            Row(
                f"after unload, {size} {dtype}",
                f"{after / GB:.3f} GB",
                f"{before / GB:.3f} GB",
                f"{returned:+.1%}",
                "within 10 %",
                abs(returned) <= 0.10,
            )
        )
    return Section(
        "Memory truth",
        "The estimate `POST /model/upload` reports (before reading weights) vs the resident memory (RSS) the load "
        "added to the server process, measured after one generated token so memory-mapped weights count; then RSS "
        "after `POST /model/unload` vs before the load. One fresh, warmed-up server per model.",
        rows,
    )


# --------------------------------------------------------------------------- 4. download


def bench_download(work: Path, config: tuple[str, str], reps: int) -> Section:
    from huggingface_hub import snapshot_download

    path = model_path(*config)
    total = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    ours, direct, event_rates = [], [], []
    with (
        hub_process("bench/model", path) as endpoint,
        server(work / "download", hub=endpoint) as orchard,
        orchard.client() as client,
    ):
        for i in range(reps):
            started = time.perf_counter()
            job = client.post("/model/download", json={"model_id": "bench/model", "load": False}).json()
            events = 0
            with client.stream("GET", f"/model/jobs/{job['id']}/events") as stream:
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        events += 1
            elapsed = time.perf_counter() - started
            assert client.get(f"/model/jobs/{job['id']}").json()["status"] == "ready"
            ours.append(elapsed)
            event_rates.append(events / elapsed)
            client.delete("/model/local-models/bench/model").raise_for_status()

            cache = work / f"direct-{i}"
            started = time.perf_counter()
            snapshot_download("bench/model", cache_dir=cache, endpoint=endpoint)
            direct.append(time.perf_counter() - started)
            shutil.rmtree(cache)
    ratio = median(direct) / median(ours)  # throughput ratio
    log(f"download: ours {total / median(ours) / 1e6:.0f} MB/s, direct {total / median(direct) / 1e6:.0f} MB/s")
    return Section(
        "Download",
        f"{total / 1e6:.0f} MB ({config[0]} {config[1]}) from a Hub-compatible server on 127.0.0.1 in another process: "
        "an Orchard job (`POST /model/download`, `load: false`, from the request to the SSE stream's `end`) vs "
        f"`huggingface_hub.snapshot_download` into an empty cache; median of {reps}.",
        [
            Row(
                "throughput",
                f"{total / median(ours) / 1e6:.0f} MB/s",
                f"{total / median(direct) / 1e6:.0f} MB/s",
                f"{ratio:.2f}×",
                "≥ 0.90×",
                ratio >= 0.90,
            ),
            Row("progress events per second (SSE)", f"{median(event_rates):.1f}/s", "—", "", "", None),
        ],
    )


# --------------------------------------------------------------------------- 5. generation


PROMPT = [{"role": "user", "content": "Write a short story about an orchard in spring."}]


def plain_generate(path: Path, dtype: str, max_new: int, reps: int) -> tuple[list[float], list[float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]

    class Marks(BaseStreamer):  # type: ignore[misc]
        """Times each token, and the first visible text: what a client of a streaming server can see first."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.first_text: float | None = None
            self.ids: list[int] = []
            self.prompt = True

        def put(self, value: Any) -> None:
            if self.prompt:
                self.prompt = False
                return
            self.times.append(time.perf_counter())
            if self.first_text is None:
                self.ids += value.reshape(-1).tolist()
                text = tokenizer.decode(self.ids, skip_special_tokens=True)
                if text and not text.endswith("\ufffd"):  # a random model often starts mid-character
                    self.first_text = time.perf_counter()

        def end(self) -> None:
            pass

    ttft, tps = [], []
    for _ in range(reps + 1):
        marks = Marks()
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new,
                do_sample=False,
                streamer=marks,
                pad_token_id=tokenizer.pad_token_id,
            )
        ttft.append(((marks.first_text or marks.times[-1]) - started) * 1000)
        tps.append((len(marks.times) - 1) / (marks.times[-1] - marks.times[0]))
    del model
    return ttft[1:], tps[1:]  # the first run warms up


def stream_completion(url: str, model: str, max_new: int) -> tuple[float, float, int]:
    """TTFT (ms), tokens/s after the first token, completion tokens, through /v1/chat/completions streaming."""
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": max_new,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    marks: list[float] = []
    tokens = 0
    with httpx.Client(timeout=600, trust_env=False) as client:
        started = time.perf_counter()
        with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    marks.append(time.perf_counter())
    return (marks[0] - started) * 1000, (tokens - 1) / (marks[-1] - marks[0]), tokens


def bench_generation(work: Path, config: tuple[str, str], reps: int, max_new: int = 96) -> Section:
    path = model_path(*config)
    with server(work / "gen") as orchard, orchard.client() as client:
        wait_for(lambda: client.get("/health").json()["warmup"] == "done", timeout=120, what="warm-up")
        client.post("/model/upload", params={"model_path": str(path), "dtype": config[1]}).raise_for_status()
        model = client.get("/v1/models").json()["data"][0]["id"]
        stream_completion(orchard.url, model, 8)  # warm
        runs = [stream_completion(orchard.url, model, max_new) for _ in range(reps)]
        ttft_ours, tps_ours = [r[0] for r in runs], [r[1] for r in runs]

    ttft_plain, tps_plain = plain_generate(path, config[1], max_new, reps)
    tps_ratio = median(tps_ours) / median(tps_plain)
    ttft_overhead = median(ttft_ours) - median(ttft_plain)
    log(
        f"generation: {median(tps_ours):.1f} vs {median(tps_plain):.1f} tok/s; TTFT {median(ttft_ours):.1f} vs "
        f"{median(ttft_plain):.1f} ms"
    )
    return Section(
        "Generation",
        f"{config[0]} {config[1]}, greedy, {max_new} new tokens, the model's chat template. Orchard: "
        "`POST /v1/chat/completions` with `stream: true` measured by the client (time to the first content chunk; "
        "tokens per second after it). Plain: `model.generate` in the benchmark process with a streamer taking the "
        "same marks (time to the first token that decodes to visible text: a random model often starts in the middle "
        f"of a UTF-8 character, which no server can show yet). Median of {reps}.",
        [
            Row(
                "tokens per second",
                f"{median(tps_ours):.1f}",
                f"{median(tps_plain):.1f}",
                f"{tps_ratio:.2f}×",
                "≥ 0.95×",
                tps_ratio >= 0.95,
            ),
            Row(
                "time to first token",
                fmt_ms(median(ttft_ours)),
                fmt_ms(median(ttft_plain)),
                f"{ttft_overhead:+.1f} ms",
                "≤ +20 ms",
                ttft_overhead <= 20,
            ),
        ],
    )


def concurrent_clients(url: str, model: str, max_new: int, engine: str = "") -> list[Row]:
    """1, 4 and 8 streaming clients started together: aggregate tokens/s against one client alone, and the time
    to first token p50 / p99."""
    rows = []
    single_rate = None
    for clients in (1, 4, 8):
        results: list[tuple[float, float, int]] = []

        def one(into: list[tuple[float, float, int]] = results) -> None:
            into.append(stream_completion(url, model, max_new))

        threads = [threading.Thread(target=one) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        rate = sum(r[2] for r in results) / wall
        single_rate = single_rate or rate
        ttfts = sorted(r[0] for r in results)
        p99 = ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))]
        log(f"{engine}concurrency {clients}: {rate:.1f} tok/s; TTFT p50 {median(ttfts):.0f} ms, p99 {p99:.0f} ms")
        # the issue's goal is the transformers engine's on CPU; llama.cpp's rows are reported beside it
        goal, met = ("≥ 2.5×", rate / single_rate >= 2.5) if clients == 4 and not engine else ("", None)
        rows.append(
            Row(
                f"{engine}{clients} client{'s' if clients > 1 else ''}: aggregate tokens/s; TTFT p50 / p99",
                f"{rate:.1f}; {fmt_ms(median(ttfts))} / {fmt_ms(p99)}",
                f"{single_rate:.1f} (one client)",
                f"{rate / single_rate:.2f}×",
                goal,
                met,
            )
        )
    return rows


def bench_concurrency(work: Path, config: tuple[str, str], max_new: int = 64) -> Section:
    """1, 4 and 8 streaming clients at once: aggregate tokens/s vs one client, and time to first token."""
    path = model_path(*config)
    with server(work / "conc") as orchard, orchard.client() as client:
        wait_for(lambda: client.get("/health").json()["warmup"] == "done", timeout=120, what="warm-up")
        client.post("/model/upload", params={"model_path": str(path), "dtype": config[1]}).raise_for_status()
        model = client.get("/v1/models").json()["data"][0]["id"]
        stream_completion(orchard.url, model, 8)  # warm
        rows = concurrent_clients(orchard.url, model, max_new)
    return Section(
        "Concurrent chat",
        f"{config[0]} {config[1]}, greedy, {max_new} new tokens, streaming `/v1/chat/completions` clients started "
        "together. Aggregate tokens/s = all completion tokens / wall time, against one client alone in the same "
        "run; requests share each decoding step (ORCHARD_CHAT_MAX_BATCH, default 8).",
        rows + decode_ceiling(path, config[1], max_new),
    )


def decode_ceiling(path: Path, dtype: str, max_new: int) -> list[Row]:
    """What batching can give on this machine at all (bench/decode_ceiling.py, in a process of its own): Orchard's
    batched decode vs `generate` and vs transformers' continuous batching, on the same batch of equal prompts."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.decode_ceiling", str(path), dtype, str(max_new)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    figures = {int(k): v for k, v in result["rows"].items()}
    device = result["device"]
    log(f"decode on {device}: the decoder multiplies {'W @ x.T' if result['weight_first'] else 'x @ W.T'} for few rows")
    one = figures[1]
    rows = []
    for n, best in figures.items():
        ours, plain, cb = best["ours"], best["generate"], best["continuous"]
        log(f"decode batch {n} on {device}: {ours:.1f} tok/s ours, {plain:.1f} generate, {cb:.1f} continuous batching")
        rows.append(
            Row(
                f"batch of {n}, in-process decode on {device}: tokens/s (x batch of 1)",
                f"{ours:.1f} ({ours / one['ours']:.2f}×)",
                f"{plain:.1f} generate ({plain / one['generate']:.2f}×)",
                f"{ours / plain:.2f}×",
                "",
                None,
            )
        )
    for n, best in figures.items():
        ours, cb = best["ours"], best["continuous"]
        rows.append(
            Row(
                f"batch of {n} on {device}, vs transformers' continuous batching ({result['attention']}): tokens/s",
                f"{ours:.1f}",
                f"{cb:.1f} ({cb / one['continuous']:.2f}× its batch of 1)"
                + ("" if result["same"] else "; greedy tokens differ"),
                f"{ours / cb:.2f}×",
                "",
                None,
            )
        )
    return rows


# --------------------------------------------------------------------------- training

PLAIN_TRAIN = """
import json, resource, sys, time
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments
from backend.services.dataset_tools import encode_example  # the same ids and labels: only the training is timed

path, data, steps, batch, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
tokenizer = AutoTokenizer.from_pretrained(path)
rows = [json.loads(line) for line in open(data)]
examples = [dict(zip(("input_ids", "labels"), encode_example(tokenizer, row))) for row in rows]
model = AutoModelForCausalLM.from_pretrained(path)
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                         learning_rate=2e-4, max_steps=steps, use_cpu=True, report_to="none", save_strategy="no",
                         logging_steps=10, disable_tqdm=True, remove_unused_columns=False)
collator_tokenizer = AutoTokenizer.from_pretrained(path)
if collator_tokenizer.pad_token is None:
    collator_tokenizer.pad_token = collator_tokenizer.eos_token
trainer = Trainer(model=model, args=args, train_dataset=examples,
                  data_collator=DataCollatorForSeq2Seq(collator_tokenizer, padding=True, label_pad_token_id=-100))
started = time.monotonic()
trainer.train()
seconds = time.monotonic() - started
print(json.dumps({"train_seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""


def bench_training(work: Path, config: tuple[str, str], steps: int = 30, batch: int = 8) -> Section:
    """Our train job's seconds per step vs a plain Trainer + peft script on the same rows; the plan vs the peak."""
    from tests.factories import code_task_rows

    path = model_path(*config)
    data = work / "codes.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in code_task_rows()))
    plain = subprocess.run(
        [sys.executable, "-c", PLAIN_TRAIN, str(path), str(data), str(steps), str(batch), str(work / "plain")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    baseline = json.loads(plain.stdout.strip().splitlines()[-1])
    with server(work / "train", warmup=False) as orchard, orchard.client() as client:
        with data.open("rb") as file:
            dataset = client.post("/datasets", files={"file": ("codes.jsonl", file)}).json()
        body = {"dataset_id": dataset["id"], "model_id": str(path), "max_steps": steps, "batch_size": batch}
        body |= {"gradient_accumulation_steps": 1, "learning_rate": 2e-4}
        plan = client.post("/training/plan", json=body).json()
        job = client.post("/training/jobs", json=body).json()
        url = f"/jobs/{job['id']}"
        wait_for(lambda: client.get(url).json()["status"] in ("ready", "failed"), timeout=1800, what="the training")
        job = client.get(url).json()
    if job["status"] != "ready":
        raise RuntimeError(f"the training job failed: {job['error']}")
    result = job["result"]
    ours_step, plain_step = result["train_seconds"] / steps, baseline["train_seconds"] / steps
    log(f"training: {ours_step:.3f} s/step ours, {plain_step:.3f} plain; peak {result['peak_memory_gb']:.2f} GB")
    return Section(
        "Fine-tuning (LoRA)",
        f"{config[0]} {config[1]}, LoRA r8 on every linear layer, batch {batch}, {steps} steps on the tests' 48 chat "
        "rows. Ours: a `train` job through the API (its Trainer time, which includes its evaluations on the held-out "
        "tenth and checkpoints every tenth of the run, at least 20 steps apart); plain: a Trainer + peft script on "
        "the same ids, no evaluation or checkpoints. Memory: the plan's estimate against the training process's peak "
        "resident set (which also holds Python, torch and the tokenizer).",
        [
            Row(
                "seconds per step",
                f"{ours_step:.3f}",
                f"{plain_step:.3f}",
                f"{plain_step / ours_step:.2f}×",
                "≥ 0.95×",
                plain_step / ours_step >= 0.95,
            ),
            Row(
                "memory: plan estimate vs measured peak (GB)",
                f"{plan['memory']['total_gb']:.2f} planned; {result['peak_memory_gb']:.2f} peak",
                f"{baseline['peak_gb']:.2f} peak",
                f"{plan['memory']['total_gb'] / result['peak_memory_gb']:.2f}× (plan / peak)",
                "",
                None,
            ),
        ],
    )


# --------------------------------------------------------------------------- GGUF export


def bench_export(work: Path, config: tuple[str, str], types: tuple[str, ...] = ("f32", "f16", "q8_0")) -> Section:
    """Our export job's seconds per GB written and file size per type; llama.cpp's convert_hf_to_gguf.py on the
    same model where ``LLAMA_CPP_DIR`` names a llama.cpp checkout (none is installed with Orchard)."""
    path = model_path(*config)
    source_gb = sum(f.stat().st_size for f in path.glob("*.safetensors")) / 1e9
    results: dict[str, dict[str, Any]] = {}
    with server(work / "export", warmup=False) as orchard, orchard.client() as client:
        for quantization in types:
            body = {"model_id": str(path), "quantization": quantization}
            response = client.post("/export/gguf", json=body)
            if response.status_code != 202:
                raise RuntimeError(f"the export was refused: {response.text}")
            url = f"/jobs/{response.json()['id']}"
            wait_for(lambda u=url: client.get(u).json()["status"] in ("ready", "failed"), timeout=1800, what="export")
            job = client.get(url).json()
            if job["status"] != "ready":
                raise RuntimeError(f"the export failed: {job['error']}")
            results[quantization] = job["result"]
            log(
                f"export {quantization}: {job['result']['write_seconds']:.1f} s write, "
                f"{job['result']['check_seconds']:.1f} s check"
            )
    convert = _convert_seconds(work, path)
    rows = []
    for quantization, result in results.items():
        ours = result["write_seconds"] / source_gb
        plain = convert.get(quantization)
        check = result["check"]
        rows.append(
            Row(
                f"{quantization}: seconds per GB of source weights; file size",
                f"{ours:.2f} s/GB; {result['size_bytes'] / 1e6:.1f} MB (check {result['check_seconds']:.1f} s: "
                f"top-1 {check['top1_agreement']:.2f}, rel. diff {check['max_relative_diff']:.1e})",
                f"{plain / source_gb:.2f} s/GB" if plain is not None else "not run",
                f"{plain / result['write_seconds']:.2f}×" if plain is not None else "",
                "",
                None,
            )
        )
    return Section(
        "GGUF export",
        f"{config[0]} {config[1]} ({source_gb:.2f} GB of safetensors), one `export` job per type through the API. "
        "Ours: the job's writing time (read, transform, quantize in numpy, write), then its self-check time apart "
        "(the source's logits in transformers, the file read back in llama.cpp). Plain: llama.cpp's "
        "convert_hf_to_gguf.py on the same folder (`LLAMA_CPP_DIR`; it converts to f32, f16 and q8_0; the 4- and "
        "5-bit types need its compiled llama-quantize).",
        rows,
    )


def _convert_seconds(work: Path, path: Path) -> dict[str, float]:
    """llama.cpp's own converter's wall time per type, where a checkout is given; {} otherwise."""
    checkout = os.environ.get("LLAMA_CPP_DIR")
    if not checkout or not (Path(checkout) / "convert_hf_to_gguf.py").is_file():
        log("export: LLAMA_CPP_DIR not set; llama.cpp's convert_hf_to_gguf.py not run")
        return {}
    seconds = {}
    for quantization in ("f32", "f16", "q8_0"):
        out = work / f"convert-{quantization}.gguf"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(Path(checkout) / "convert_hf_to_gguf.py"), str(path), "--outtype", quantization,
             "--outfile", str(out)],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            log(f"export: convert_hf_to_gguf.py failed: {done.stderr.strip().splitlines()[-1:]}")
            return {}
        seconds[quantization] = time.perf_counter() - started
    return seconds


# --------------------------------------------------------------------------- the llama.cpp engine


def plain_llama(gguf: Path, source: Path, n_ctx: int, max_new: int, reps: int) -> tuple[list[float], list[float]]:
    """llama-cpp-python by hand on the same file: the same prompt ids (the source's chat template), greedy, the same
    context and threads as Orchard's engine; time to the first token and tokens/s after it."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    threads = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    llm = Llama(
        model_path=str(gguf),
        n_ctx=n_ctx,
        n_batch=min(512, n_ctx),
        n_threads=threads,
        n_threads_batch=psutil.cpu_count() or threads,
        verbose=False,
    )
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    eos = llm.token_eos()
    ttft, tps = [], []
    for _ in range(reps + 1):
        marks: list[float] = []
        started = time.perf_counter()
        for token in llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            marks.append(time.perf_counter())
            if token == eos or len(marks) >= max_new:
                break
        ttft.append((marks[0] - started) * 1000)
        tps.append((len(marks) - 1) / (marks[-1] - marks[0]))
    llm.close()
    return ttft[1:], tps[1:]  # the first run warms up


def bench_llama(work: Path, config: tuple[str, str], reps: int, max_new: int = 96) -> Section:
    """A GGUF model (Orchard's own q8_0 export) through Orchard's llama.cpp engine, against plain llama-cpp-python
    on the same file and against the same model's safetensors through Orchard's transformers engine."""
    path = model_path(*config)
    home = work / "llama"
    with server(home, warmup=False) as orchard, orchard.client() as client:
        response = client.post("/export/gguf", json={"model_id": str(path), "quantization": "q8_0"})
        if response.status_code != 202:
            raise RuntimeError(f"the export was refused: {response.text}")
        url = f"/jobs/{response.json()['id']}"
        wait_for(lambda: client.get(url).json()["status"] in ("ready", "failed"), timeout=1800, what="export")
        job = client.get(url).json()
        if job["status"] != "ready":
            raise RuntimeError(f"the export failed: {job['error']}")
        folder = home / "models" / "bench-q8_0"
        folder.mkdir(parents=True)
        gguf = folder / job["result"]["file_name"]
        shutil.copy(job["result"]["path"], gguf)
        loaded = client.post("/model/load", json={"model_id": "bench-q8_0", "wait": True}, timeout=600)
        loaded.raise_for_status()
        metadata = loaded.json()["result"]
        if metadata["engine"] != "llama.cpp":
            raise RuntimeError("llama.cpp is not installed here (scripts/bench adds it where a C++ compiler is found)")
        stream_completion(orchard.url, "bench-q8_0", 8)  # warm
        runs = [stream_completion(orchard.url, "bench-q8_0", max_new) for _ in range(reps)]
        concurrent = concurrent_clients(orchard.url, "bench-q8_0", max_new, engine="llama.cpp, ")
        client.post("/model/upload", params={"model_path": str(path), "dtype": config[1]}).raise_for_status()
        model = client.get("/v1/models").json()["data"][0]["id"]
        stream_completion(orchard.url, model, 8)
        on_transformers = [stream_completion(orchard.url, model, max_new) for _ in range(reps)]
    ttft_plain, tps_plain = plain_llama(gguf, path, metadata["context_length"], max_new, reps)
    ttft_ours, tps_ours = median([r[0] for r in runs]), median([r[1] for r in runs])
    ttft_tf, tps_tf = median([r[0] for r in on_transformers]), median([r[1] for r in on_transformers])
    ratio = tps_ours / median(tps_plain)
    log(f"llama.cpp: {tps_ours:.1f} vs plain {median(tps_plain):.1f} tok/s; transformers engine {tps_tf:.1f} tok/s")
    return Section(
        "Chat on the llama.cpp engine",
        f"{config[0]} exported by Orchard to q8_0 ({job['result']['size_bytes'] / 1e6:.0f} MB), greedy, {max_new} new "
        f"tokens, context {metadata['context_length']}. Orchard: `POST /v1/chat/completions` streaming, measured by "
        "the client, on the llama.cpp engine (the first row) and on the transformers engine with the source's "
        f"{config[1]} safetensors (the third). Plain: llama-cpp-python's `generate` in the benchmark process on the "
        "same file, with the same prompt ids, context and threads. Median of "
        f"{reps}; the random-weight model may end a reply early at its EOS, the same for both. The last rows: 1, 4 "
        "and 8 clients started together on the llama.cpp engine (one `llama_decode` per step for all); on a CPU "
        "llama.cpp's step costs more than twice as much for two rows as for one (docs/ARCHITECTURE.md).",
        [
            Row(
                "tokens per second",
                f"{tps_ours:.1f}",
                f"{median(tps_plain):.1f}",
                f"{ratio:.2f}×",
                "≥ 0.9×",
                ratio >= 0.9,
            ),
            Row(
                "time to first token",
                fmt_ms(ttft_ours),
                fmt_ms(median(ttft_plain)),
                f"{ttft_ours - median(ttft_plain):+.1f} ms",
                "",
                None,
            ),
            Row(
                f"tokens per second vs Orchard's transformers engine ({config[1]} safetensors)",
                f"{tps_ours:.1f}",
                f"{tps_tf:.1f} (TTFT {fmt_ms(ttft_tf)})",
                f"{tps_ours / tps_tf:.2f}×",
                "",
                None,
            ),
            *concurrent,
        ],
    )


# --------------------------------------------------------------------------- documents (RAG)

WORDS = [
    "pump",
    "valve",
    "filter",
    "pressure",
    "station",
    "river",
    "harvest",
    "ledger",
    "engine",
    "bearing",
    "orchard",
    "signal",
    "copper",
    "timber",
    "inspection",
    "schedule",
    "archive",
    "lantern",
    "harbour",
    "meadow",
    "circuit",
    "gasket",
    "turbine",
    "quarry",
    "beacon",
    "mill",
]


def synthetic_notes(n: int, seed: int = 3) -> list[tuple[str, bytes]]:
    """``n`` Markdown notes of a few paragraphs each (about 2,500 characters), with headings."""
    import random

    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 20))).capitalize() + "."

    notes = []
    for i in range(n):
        parts = [f"# Note {i}"]
        for section in range(3):
            parts.append(f"## Part {section}")
            parts += [" ".join(sentence() for _ in range(5)) for _ in range(2)]
        notes.append((f"note-{i:04d}.md", "\n\n".join(parts).encode()))
    return notes


def bench_rag(work: Path, documents: int = 200, sizes: tuple[int, ...] = (10_000, 100_000)) -> Section:
    """Ingest through the API vs plain sentence-transformers encoding of the same chunks; the index's query
    latency at 10k and 100k chunks vs numpy exact search over the same vectors."""
    from sentence_transformers import SentenceTransformer

    from backend.services.rag_documents import chunk, parse
    from backend.services.rag_pgvector import PgvectorStore
    from backend.services.rag_pipeline import embedder_path
    from backend.services.rag_store import SqliteStore
    from tests import postgres

    notes = synthetic_notes(documents)
    with server(work / "rag", warmup=False) as orchard, orchard.client() as client:
        created = client.post("/rag/collections", json={"name": "bench"}).json()
        url = f"/rag/collections/{created['id']}/documents"
        warm = client.post(url + "?wait=true", files=[("files", ("warm.md", b"# Warm\n\nLoads the embedder."))])
        warm.raise_for_status()
        started = time.perf_counter()
        response = client.post(url + "?wait=true", files=[("files", (n, d)) for n, d in notes], timeout=1800)
        ours_s = time.perf_counter() - started
        response.raise_for_status()
        chunks = response.json()["result"]["chunks"]
    model = SentenceTransformer(embedder_path("all-MiniLM-L6-v2"), device="cpu")
    tokenizer = model.tokenizer

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    texts = []
    for name, data in notes:
        for piece in chunk(parse(name, data), count, 256, 32):
            texts.append(f"{piece.heading}\n{piece.text}" if piece.heading else piece.text)
    model.encode(texts[:64], batch_size=64)
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    plain_s = time.perf_counter() - started
    log(f"rag ingest: {chunks / ours_s:.1f} vs plain encode {len(texts) / plain_s:.1f} chunks/s")
    rows = [
        Row(
            f"ingest, chunks per second ({documents} Markdown notes, {chunks} chunks)",
            f"{chunks / ours_s:.1f}",
            f"{len(texts) / plain_s:.1f}",
            f"{(chunks / ours_s) / (len(texts) / plain_s):.2f}×",
            "",
            None,
        )
    ]
    with contextlib.ExitStack() as stack:
        stores: list[Callable[[int], ChunkStore]] = [lambda size: SqliteStore(work / f"index-{size}.db")]
        why = postgres.unavailable()
        if why:
            log(f"rag: no pgvector rows ({why})")
        else:
            pg = stack.enter_context(postgres.server())
            stores.append(lambda size: PgvectorStore(pg.database()))
        rows += query_rows(stores, sizes)
    return Section(
        "Documents (RAG)",
        f"Ingest: {documents} synthetic Markdown notes in one `POST /rag/collections/{{id}}/documents?wait=true` "
        "(upload, parse, chunk with the embedder's tokenizer, embed with the bundled all-MiniLM-L6-v2, write the "
        "index), after a warm-up file loads the embedder; plain: sentence-transformers encoding the same chunk "
        "texts in the benchmark process. Query: the chunk index directly, 50 random unit queries over random "
        "384-d vectors; plain: numpy's exact top-10 over the same matrix in memory (no storage at all). The "
        "pgvector rows run where PostgreSQL and pgvector are installed, on a throwaway local server "
        "(tests/postgres.py), over a socket on this machine.",
        rows,
    )


def query_rows(stores: list[Callable[[int], ChunkStore]], sizes: tuple[int, ...]) -> list[Row]:
    """Each store's vector and keyword top-10 latency at each size, against numpy over the same vectors."""
    import numpy as np

    from backend.services.rag_store import StoredChunk

    rows = []
    rng = np.random.default_rng(0)
    for size, make in itertools.product(sizes, stores):
        vectors = rng.standard_normal((size, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store = make(size)
        for at in range(0, size, 5000):
            batch = [
                StoredChunk(f"c{i}", "bench", f"d{i // 10}", "f.md", i % 10, " ".join(rng.choice(WORDS, 30)), None,
                            None, 0, 0)
                for i in range(at, min(at + 5000, size))
            ]  # fmt: skip
            store.add(batch, vectors[at : at + len(batch)])
        queries = rng.standard_normal((50, 384)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        ours, plain, keyword = [], [], []
        for q in queries:
            t = time.perf_counter()
            store.vector_search("bench", q, 10)
            ours.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            scores = vectors @ q
            top = np.argpartition(-scores, 10)[:10]
            top[np.argsort(-scores[top])]
            plain.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            store.keyword_search("bench", " ".join(rng.choice(WORDS, 3)), 10)
            keyword.append((time.perf_counter() - t) * 1000)
        backend = store.backend
        store.close()
        log(f"rag query at {size}: {median(ours):.1f} ms vs numpy {median(plain):.1f} ms")
        rows.append(
            Row(
                f"vector top-10 at {size:,} chunks, p50 / p99 ({backend})",
                f"{fmt_ms(median(ours))} / {fmt_ms(percentile(ours, 99))}",
                f"{fmt_ms(median(plain))} / {fmt_ms(percentile(plain, 99))}",
                f"{median(ours) / median(plain):.2f}×",
                "",
                None,
            )
        )
        rows.append(
            Row(
                f"keyword (BM25) top-10 at {size:,} chunks, p50 / p99 ({backend})",
                f"{fmt_ms(median(keyword))} / {fmt_ms(percentile(keyword, 99))}",
                "—",
                "",
                "",
                None,
            )
        )
    return rows


# --------------------------------------------------------------------------- 6. API overhead


def loadgen(url: str, seconds: float = 5, concurrency: int = 8) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", url, str(seconds), str(concurrency)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def bench_api(work: Path) -> Section:
    with server(work / "api") as orchard, orchard.client() as client:
        wait_for(lambda: client.get("/health").json()["warmup"] == "done", timeout=120, what="warm-up")
        body = client.get("/model/current").json()
        ours = loadgen(orchard.url + "/model/current")
    body_file = work / "current.json"
    body_file.write_text(json.dumps(body))
    port = free_port()
    plain_server = subprocess.Popen([sys.executable, "-m", "bench.plain_app", str(port), str(body_file)], cwd=ROOT)
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/model/current"), timeout=60, what="plain app")
        plain = loadgen(f"http://127.0.0.1:{port}/model/current")
    finally:
        plain_server.terminate()
        plain_server.wait(10)
    log(f"api: ours {ours['rps']:.0f} rps p99 {ours['p99_ms']:.1f} ms; plain {plain['rps']:.0f} rps")
    return Section(
        "API overhead",
        "`GET /model/current` (no model loaded; it reads memory statistics on every call) under 5 s of load from "
        "a second process (8 concurrent keep-alive connections, httpx), vs a bare FastAPI app on the same uvicorn "
        "returning the same JSON.",
        [
            Row(
                "requests per second",
                f"{ours['rps']:.0f}",
                f"{plain['rps']:.0f}",
                f"{ours['rps'] / plain['rps']:.2f}×",
                "",
                None,
            ),
            Row(
                "p99 latency",
                fmt_ms(ours["p99_ms"]),
                fmt_ms(plain["p99_ms"]),
                f"{ours['p99_ms'] / plain['p99_ms']:.2f}×",
                "",
                None,
            ),
            Row(
                "errors",
                f"{ours['errors']:.0f} of {ours['requests']:.0f}",
                f"{plain['errors']:.0f}",
                "",
                "0",
                ours["errors"] == 0,
            ),
        ],
    )


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


# --------------------------------------------------------------------------- report


def machine() -> str:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {psutil.cpu_count()} logical cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM; Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}; device: CPU"
    )


def write(sections: list[Section], started: datetime, args: argparse.Namespace) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Made by `scripts/bench{' --quick' if args.quick else ''}` on {started:%Y-%m-%d %H:%M} UTC, "
        f"in {(datetime.now(UTC) - started).total_seconds() / 60:.0f} minutes.",
        "",
        f"Machine: {machine()}.",
        "",
        "Every figure is compared with the plain library doing the same work in the same run; medians over several "
        "repetitions. Targets are reported, not enforced. Figures from a busy or small machine are noisy: compare "
        "ratios, not absolute numbers, between runs.",
        "",
    ]
    missed = [(s.title, r.metric) for s in sections for r in s.rows if r.holds is False]
    lines += [
        f"**Targets missed: {len(missed)}**" + (": " + "; ".join(f"{t}: {m}" for t, m in missed) if missed else ""),
        "",
    ]
    for section in sections:
        lines += [
            f"## {section.title}",
            "",
            section.method,
            "",
            "| Measure | Orchard | Plain | Ratio | Target | Holds |",
            "|---|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row.cells()) + " |" for row in section.rows]
        lines.append("")
    RESULTS.write_text("\n".join(lines))
    log(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, the ~100M model only")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated sections: load,responsiveness,memory,download,generation,concurrency,training,export,"
        "llama,rag,api",
    )
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    reps = 3 if args.quick else 5
    configs = [("100m", "bfloat16"), ("100m", "float32")]
    if not args.quick:
        configs += [("400m", "bfloat16"), ("400m", "float32")]
    started = datetime.now(UTC)
    log("making the models (once; cached in bench/.cache)")
    for config in configs:
        model_path(*config)
    plan: list[tuple[str, Callable[[Path], Section]]] = [
        ("load", lambda w: bench_load(w, configs, reps)),
        ("responsiveness", lambda w: bench_responsiveness(w, configs[-1], ("100m", "bfloat16"))),
        ("memory", lambda w: bench_memory(w, configs)),
        ("download", lambda w: bench_download(w, configs[-2] if len(configs) > 2 else configs[0], reps)),
        ("generation", lambda w: bench_generation(w, ("100m", "float32"), reps)),
        ("concurrency", lambda w: bench_concurrency(w, ("100m", "float32"))),
        ("training", lambda w: bench_training(w, ("100m", "float32"))),
        ("export", lambda w: bench_export(w, ("100m", "float32"))),
        ("llama", lambda w: bench_llama(w, ("100m", "float32"), reps)),
        ("rag", bench_rag),
        ("api", bench_api),
    ]
    sections = []
    with tempfile.TemporaryDirectory(prefix="orchard-bench-") as tmp:
        for name, run in plan:
            if only and name not in only:
                continue
            log(f"== {name}")
            work = Path(tmp) / name
            work.mkdir()
            sections.append(run(work))
    write(sections, started, args)


if __name__ == "__main__":
    main()
