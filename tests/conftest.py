"""Shared fixtures: isolated settings and caches, tiny models made on the spot, a Hub-compatible server."""

from __future__ import annotations

import os

# huggingface_hub reads these once, at import: set them before anything imports it.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from huggingface_hub import constants as hf_constants

from backend.config import Settings, get_settings
from backend.main import create_app
from backend.services.model_service import process_cache, release_memory
from tests import postgres
from tests.factories import make_model
from tests.hub_server import HubServer

UNREACHABLE_HUB = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused at once


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own Hub cache and no inherited Hugging Face or Orchard settings."""
    for name in list(os.environ):
        if name.startswith(("ORCHARD_", "HF_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE_HUB)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    get_settings.cache_clear()
    yield
    process_cache().swap(None)
    release_memory()
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home_dir=tmp_path / "orchard",
        hf_cache_dir=tmp_path / "hub-cache",
        hf_endpoint=UNREACHABLE_HUB,
        warmup=False,
        memory_safety_margin_gb=0.0,
        # Tests load fixture models by path from their temporary folders; test_paths.py checks the default roots.
        model_roots=[tmp_path_factory.getbasetemp()],
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models, made once per session: copy them before changing them."""
    root = tmp_path_factory.mktemp("models")
    make_model(root / "tiny-llama", "llama")
    make_model(root / "tiny-gpt2", "gpt2")
    make_model(root / "tiny-llama-pickle", "llama", safe_serialization=False)
    return root


@pytest.fixture
def local_models(settings: Settings, model_store: Path) -> Path:
    """The models directory holding copies of tiny-llama and tiny-gpt2."""
    settings.ensure_dirs()
    for name in ("tiny-llama", "tiny-gpt2"):
        shutil.copytree(model_store / name, settings.models_path / name)
    return settings.models_path


@pytest.fixture
def hub(settings: Settings, model_store: Path) -> Iterator[HubServer]:
    """A Hub-compatible server on 127.0.0.1 serving the tiny models; ``settings`` point at it."""
    with HubServer() as server:
        server.add_repo("orchard-test/tiny-llama", model_store / "tiny-llama")
        server.add_repo("tiny-gpt2", model_store / "tiny-gpt2")
        server.add_repo("orchard-test/gated-llama", model_store / "tiny-llama", gated=True, token="hf_good_token")
        server.add_repo("orchard-test/private-llama", model_store / "tiny-llama", private=True, token="hf_good_token")
        server.add_repo("orchard-test/pickle-llama", model_store / "tiny-llama-pickle")
        settings.hf_endpoint = server.endpoint
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.Server]:
    """A real PostgreSQL started for this test session (tests/postgres.py); skipped where none can run, unless
    ORCHARD_POSTGRES=1 (CI), where that is an error."""
    why = postgres.unavailable()
    if why and not postgres.REQUIRED:
        pytest.skip(f"no PostgreSQL here: {why}")
    with postgres.server() as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: postgres.Server) -> str:
    """The URL of a fresh database with pgvector in it, on the session's server."""
    return postgres_server.database()
