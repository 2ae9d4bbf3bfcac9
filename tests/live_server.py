"""The real app under uvicorn on 127.0.0.1, in a thread: for clients that need a real socket (openai, a browser)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from backend.config import Settings
from backend.main import create_app


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    settings: Settings


@contextmanager
def live_server(settings: Settings, startup_timeout: float = 30.0) -> Iterator[LiveServer]:
    """Start ``create_app(settings)`` on a free port, wait for ``/health``, and stop it afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="orchard-live", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError("the server stopped while starting; see the captured log")
            try:
                if httpx.get(url + "/health", headers=headers, timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}/health did not answer within {startup_timeout} s")
            time.sleep(0.05)
        yield LiveServer(url=url, app=app, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the server did not stop within 15 s")
