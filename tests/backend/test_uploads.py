"""Uploading a model from the browser: a folder's files or one zip, stored safely under the models directory."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app


def _folder_files(folder: Path, prefix: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (f"{prefix}/{p.name}", p.read_bytes(), "application/octet-stream"))
        for p in sorted(folder.iterdir())
        if p.is_file()
    ]


def _zip_of(folder: Path, top: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{top}/{p.name}" if top else p.name)
    return buffer.getvalue()


def _leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


def test_folder_upload_is_stored_listed_and_loadable(client: TestClient, model_store: Path, settings: Settings) -> None:
    response = client.post("/model/upload", files=_folder_files(model_store / "tiny-llama", "my-llama"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["id"] == "my-llama" and body["model"]["complete"] and body["loaded"] is None
    stored = settings.models_path / "my-llama"
    assert (stored / "model.safetensors").read_bytes() == (
        model_store / "tiny-llama" / "model.safetensors"
    ).read_bytes()
    assert [m["id"] for m in client.get("/model/local-models").json()["models"]] == ["my-llama"]
    loaded = client.post("/model/upload", params={"model_path": "my-llama"})
    assert loaded.status_code == 200 and loaded.json()["metadata"]["model_id"] == "my-llama"


def test_zip_upload_with_name_and_load(client: TestClient, model_store: Path, settings: Settings) -> None:
    archive = _zip_of(model_store / "tiny-gpt2", top="wrapped")
    response = client.post(
        "/model/upload",
        params={"load": "true"},
        data={"name": "gpt2-from-zip"},
        files=[("files", ("model.zip", archive, "application/zip"))],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["id"] == "gpt2-from-zip" and body["loaded"]["source"] == "upload"
    assert (settings.models_path / "gpt2-from-zip" / "config.json").is_file()
    assert client.get("/model/current").json()["metadata"]["model_id"] == "gpt2-from-zip"


def test_name_conflict_is_409_and_keeps_the_first(client: TestClient, model_store: Path, settings: Settings) -> None:
    files = _folder_files(model_store / "tiny-llama", "dup")
    assert client.post("/model/upload", files=files).status_code == 200
    again = client.post("/model/upload", files=_folder_files(model_store / "tiny-gpt2", "dup"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "model_exists"
    assert '"llama"' in (settings.models_path / "dup" / "config.json").read_text()
    assert _leftovers(settings.models_path) == ["dup"]


def test_path_escapes_are_refused_and_nothing_is_left(
    client: TestClient, settings: Settings, model_store: Path
) -> None:
    for bad in ("../evil/config.json", "/etc/config.json", "a/../../config.json", "C:/x/config.json"):
        response = client.post("/model/upload", files=[("files", (bad, b"{}", "application/json"))])
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_request"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("../../escaped.txt", "x")
    response = client.post("/model/upload", files=[("files", ("slip.zip", buffer.getvalue(), "application/zip"))])
    assert response.status_code == 400
    assert not (settings.models_path.parent / "escaped.txt").exists()
    assert _leftovers(settings.models_path) == []


def test_zip_symlink_entries_are_refused(client: TestClient, settings: Settings) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        link = zipfile.ZipInfo("model.safetensors")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    response = client.post("/model/upload", files=[("files", ("link.zip", buffer.getvalue(), "application/zip"))])
    assert response.status_code == 400 and "symbolic link" in response.json()["error"]["message"]
    assert _leftovers(settings.models_path) == []


def test_zip_bomb_is_refused(client: TestClient, settings: Settings) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.safetensors", b"\0" * (20 * 1024 * 1024))
    response = client.post("/model/upload", files=[("files", ("bomb.zip", buffer.getvalue(), "application/zip"))])
    assert response.status_code == 400 and "compression ratio" in response.json()["error"]["message"]
    assert _leftovers(settings.models_path) == []


def test_size_limit_413_and_partial_upload_removed(settings: Settings, model_store: Path) -> None:
    small = settings.model_copy(update={"max_upload_gb": 0.0001})  # 100 kB
    with TestClient(create_app(small)) as client:
        response = client.post("/model/upload", files=_folder_files(model_store / "tiny-llama", "big"))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert _leftovers(small.models_path) == []


def test_upload_that_is_not_a_model(client: TestClient, settings: Settings) -> None:
    response = client.post("/model/upload", files=[("files", ("notes/readme.md", b"hello", "text/markdown"))])
    assert response.status_code == 422 and "config.json" in response.json()["error"]["message"]
    assert _leftovers(settings.models_path) == []


def test_upload_needs_path_or_files(client: TestClient) -> None:
    response = client.post("/model/upload")
    assert response.status_code == 400 and "model_path" in response.json()["error"]["message"]
