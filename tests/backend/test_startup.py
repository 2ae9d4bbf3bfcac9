"""Start-up as a user meets it: a fresh ``orchard serve`` process asked to load a model the moment it answers.

The warm-up imports torch/transformers in a background thread at start-up (seconds), so that first load runs
while the warm-up still imports: transformers' lazy module is not thread-safe, and before the library lock one of
the two threads failed with ``ImportError: cannot import name ...``. Each server is a new process, since the race
only exists while the libraries are first imported.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import UNREACHABLE_HUB

SERVERS = 3  # each start pays the full import cost again (~5-15 s)
START_TIMEOUT = 60.0  # until /model/health answers
LOAD_TIMEOUT = 180.0  # the load itself, which waits for the warm-up
WARMUP_TIMEOUT = 120.0  # until /health reports the warm-up finished
# What a clean start-up log may not hold: log records above INFO, Python warnings, tracebacks, library chatter
# printed outside logging (transformers' "[transformers] ..." notices, native leak reports at exit).
NOT_CLEAN = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|Warning:|\[transformers\]|leaked", re.IGNORECASE)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def orchard_serve(home: Path, model_roots: list[Path], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``orchard serve`` in a fresh process on a free port, warm-up on, its output in ``log``; stopped after."""
    port = _free_port()
    env = {
        **os.environ,
        "ORCHARD_HOME_DIR": str(home),
        "ORCHARD_HF_CACHE_DIR": str(home / "hub-cache"),
        "ORCHARD_MODEL_ROOTS": json.dumps([str(root) for root in model_roots]),
        "ORCHARD_WARMUP": "true",
        "ORCHARD_LOG_LEVEL": "info",
        "HF_ENDPOINT": UNREACHABLE_HUB,
        "HF_HOME": str(home / "hf-home"),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=home.parent,  # no stray .env is read
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}", process
        finally:
            process.terminate()  # uvicorn shuts down gracefully on SIGTERM
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def _wait_until_up(client: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"the server exited while starting:\n{log.read_text()}"
        try:
            response = client.get("/model/health")
        except httpx.TransportError:
            response = None
        if response is not None:
            assert response.status_code < 500, response.text
            if response.status_code == 200:
                return
        assert time.monotonic() < deadline, f"/model/health did not answer within {START_TIMEOUT} s"
        time.sleep(0.02)


def _wait_for_warmup(client: httpx.Client) -> str:
    deadline = time.monotonic() + WARMUP_TIMEOUT
    while True:
        response = client.get("/health")
        assert response.status_code == 200, response.text
        state = str(response.json()["warmup"])
        if state not in ("pending", "running"):
            return state
        assert time.monotonic() < deadline, f"the warm-up was still {state} after {WARMUP_TIMEOUT} s"
        time.sleep(0.1)


@pytest.mark.parametrize("attempt", range(SERVERS))
def test_a_load_sent_the_moment_the_server_answers(attempt: int, model_store: Path, tmp_path: Path) -> None:
    model = model_store / ("tiny-llama" if attempt % 2 == 0 else "tiny-gpt2")
    log = tmp_path / "server.log"
    with (
        orchard_serve(tmp_path / "orchard", [model_store], log) as (url, process),
        httpx.Client(base_url=url, timeout=30, trust_env=False) as client,
    ):
        _wait_until_up(client, process, log)
        load = client.post("/model/upload", params={"model_path": str(model)}, timeout=LOAD_TIMEOUT)
        warmup_at_load_end = client.get("/health").json()["warmup"]
        assert load.status_code == 200, f"{load.status_code} {load.text}\n{log.read_text()}"
        assert load.json()["metadata"]["model_id"] == model.name
        assert _wait_for_warmup(client) == "done", log.read_text()
        current = client.get("/model/current")
        assert current.status_code == 200 and current.json()["metadata"]["model_id"] == model.name
    text = log.read_text()
    print(f"server {attempt}: warm-up {warmup_at_load_end} when the load answered\n{text}")
    unclean = [line for line in text.splitlines() if NOT_CLEAN.search(line)]
    assert not unclean, "the server's log should hold no warnings or errors:\n" + "\n".join(unclean)
    assert " 500 " not in text and "Internal Server Error" not in text
