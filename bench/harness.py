"""What every benchmark needs: a real Orchard server in its own process, statistics, and HTTP timing."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "bench" / ".cache" / "models"


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """An ``orchard`` server process (``uvicorn backend.main:app``) with its own home folder."""

    url: str
    process: subprocess.Popen[bytes]
    started_at: float
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def client(self, timeout: float = 600) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)


@contextmanager
def server(home: Path, *, hub: str = "http://127.0.0.1:9", warmup: bool = True, **settings: str) -> Iterator[Server]:
    """Start Orchard in a fresh process, wait until ``/health`` answers, stop it afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "ORCHARD_HOME_DIR": str(home),
        "ORCHARD_HF_CACHE_DIR": str(home / "hub-cache"),
        "ORCHARD_HF_ENDPOINT": hub,
        "ORCHARD_WARMUP": str(warmup).lower(),
        "ORCHARD_MEMORY_SAFETY_MARGIN_GB": "0",
        "ORCHARD_LOG_LEVEL": "warning",
        "ORCHARD_MODEL_ROOTS": json.dumps([str(MODELS)]),
        **{f"ORCHARD_{k.upper()}": v for k, v in settings.items()},
    }
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url + "/health"), timeout=120, what=f"{url}/health", process=process)
        yield Server(url=url, process=process, started_at=started, log=log, env=env)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.02)


class LatencyProbe:
    """Polls a URL from a background thread and records each answer's latency in ms, until stopped."""

    def __init__(self, url: str, interval: float = 0.01) -> None:
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                client.get(self.url).raise_for_status()
                self.latencies.append((time.perf_counter() - started) * 1000)
                self._stop.wait(self.interval)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def run_python(code: str, env: dict[str, str] | None = None) -> float:
    """Wall time of a fresh ``python -c code`` process, in seconds (interpreter start and imports included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **(env or {})}, check=True)
    return time.perf_counter() - started
