"""Access: this machine always; other machines only with the API key; the key on every API route when set."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from backend.config import Settings
from backend.main import create_app

KEY = "orchard-test-key-5f2c"
LAN = ("192.168.1.20", 50123)
API_ROUTES = [
    ("GET", "/health"),
    ("GET", "/config"),
    ("GET", "/model/current"),
    ("GET", "/model/local-models"),
    ("GET", "/model/jobs"),
    ("POST", "/model/unload"),
    ("GET", "/v1/models"),
    ("POST", "/chat"),
    ("GET", "/datasets"),
]


@pytest.fixture
def keyed(settings: Settings) -> Iterator[TestClient]:
    settings.api_key = SecretStr(KEY)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_every_api_route_needs_the_key(keyed: TestClient, method: str, path: str) -> None:
    missing = keyed.request(method, path)
    assert missing.status_code == 401, missing.text
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert keyed.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    right = keyed.request(method, path, headers={"Authorization": f"Bearer {KEY}"}, json={"messages": []})
    assert right.status_code not in (401, 403), right.text
    assert KEY not in right.text


def test_key_by_header_and_openai_shape(keyed: TestClient) -> None:
    assert keyed.get("/model/current", headers={"X-API-Key": KEY}).status_code == 200
    v1 = keyed.get("/v1/models")
    assert v1.status_code == 401 and v1.json()["error"]["type"] == "authentication_error"
    config = keyed.get("/config", headers={"X-API-Key": KEY}).json()["settings"]
    assert config["api_key"] == "**********"


def test_the_web_app_itself_loads_without_the_key(settings: Settings, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>Orchard app</title>")
    settings.api_key, settings.ui_dir = SecretStr(KEY), dist
    with TestClient(create_app(settings)) as client:
        for path in ("/", "/models", "/chat"):
            page = client.get(path, headers={"accept": "text/html"})
            assert page.status_code == 200 and "Orchard app" in page.text, path
        assert client.get("/model/current", headers={"accept": "text/html"}).status_code == 401


def test_other_machines_need_a_key(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app, client=LAN) as remote:
        refused = remote.get("/model/current")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "remote_access_denied"
        assert "ORCHARD_API_KEY" in refused.json()["error"]["message"]
    with TestClient(app, client=("127.0.0.1", 50124)) as local:
        assert local.get("/model/current").status_code == 200
    settings.api_key = SecretStr(KEY)
    with TestClient(create_app(settings), client=LAN) as remote:
        assert remote.get("/model/current", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    settings.api_key, settings.allow_remote_without_key = None, True
    with TestClient(create_app(settings), client=LAN) as remote:
        assert remote.get("/model/current").status_code == 200


def test_serve_refuses_a_network_address_without_a_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ORCHARD_HOME_DIR": str(tmp_path / "orchard")}
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "serve", "--host", "0.0.0.0", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 2
    assert "ORCHARD_API_KEY" in result.stderr
