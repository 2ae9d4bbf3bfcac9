"""Server-side paths: ``model_path`` must lie in the models directory, the Hub cache or ORCHARD_MODEL_ROOTS.

Everything else is refused with 403 before the path is looked at, so the API is no oracle for what exists.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app


@pytest.fixture
def outside(model_store: Path) -> Iterator[Path]:
    """A real model in a folder outside every allowed root (and outside pytest's temporary folders)."""
    folder = Path(tempfile.mkdtemp(prefix="orchard-outside-"))
    shutil.copytree(model_store / "tiny-llama", folder / "tiny-llama")
    yield folder / "tiny-llama"
    shutil.rmtree(folder)


@pytest.fixture
def strict(settings: Settings, local_models: Path) -> Iterator[TestClient]:
    settings.model_roots = []  # the defaults: models directory and Hub cache only
    with TestClient(create_app(settings)) as client:
        yield client


REFUSED = [
    "/etc",
    "/etc/passwd",
    "/dev/zero",
    "/nonexistent/model",
    "../orchard",
    "tiny-llama/../../hub-cache",
    "./tiny-llama",
]


@pytest.mark.parametrize("model_path", REFUSED)
def test_paths_outside_the_roots_are_refused(strict: TestClient, model_path: str) -> None:
    response = strict.post("/model/upload", params={"model_path": model_path})
    assert response.status_code == 403, response.text
    body = response.json()["error"]
    assert body["code"] == "path_not_allowed"
    assert "ORCHARD_MODEL_ROOTS" in body["message"] or "'..'" in body["message"]
    assert strict.get("/model/current").json()["loaded"] is False


def test_a_real_model_outside_the_roots_is_refused_until_its_folder_is_allowed(
    settings: Settings, local_models: Path, outside: Path
) -> None:
    settings.model_roots = []
    with TestClient(create_app(settings)) as client:
        assert client.post("/model/upload", params={"model_path": str(outside)}).status_code == 403
    settings.model_roots = [outside.parent]
    with TestClient(create_app(settings)) as client:
        loaded = client.post("/model/upload", params={"model_path": str(outside)})
        assert loaded.status_code == 200, loaded.text


def test_symlink_out_of_the_models_directory_is_refused(settings: Settings, local_models: Path, outside: Path) -> None:
    (local_models / "sneaky").symlink_to(outside, target_is_directory=True)
    settings.model_roots = []
    with TestClient(create_app(settings)) as client:
        response = client.post("/model/upload", params={"model_path": "sneaky"})
        assert response.status_code == 403
        assert client.post("/model/upload", params={"model_path": str(local_models / "sneaky")}).status_code == 403


def test_models_directory_and_absolute_paths_inside_it_still_load(strict: TestClient, local_models: Path) -> None:
    assert strict.post("/model/upload", params={"model_path": "tiny-llama"}).status_code == 200
    assert strict.post("/model/upload", params={"model_path": str(local_models / "tiny-gpt2")}).status_code == 200
    print(f"paths: {len(REFUSED)} refused outside the roots; models directory still loads")


def test_deleting_a_linked_model_removes_the_link_not_its_target(
    client: TestClient, local_models: Path, outside: Path
) -> None:
    (local_models / "linked").symlink_to(outside, target_is_directory=True)
    response = client.delete("/model/local-models/linked")
    assert response.status_code == 200, response.text
    assert response.json()["freed_bytes"] == 0
    assert not (local_models / "linked").exists()
    assert (outside / "config.json").exists()


def test_python_callers_may_load_any_folder(settings: Settings, outside: Path) -> None:
    """The roots guard what arrives over the API; the seed's ``load_local("/path/to/model")`` is the user's own code."""
    from backend.services.model_service import ModelService

    settings.model_roots = []
    _, _, metadata = ModelService(settings).load_local(str(outside))
    assert metadata["model_id"] == "tiny-llama"
