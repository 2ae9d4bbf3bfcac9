"""The built web app is served at / by the API's own server, without shadowing any API path."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _client(settings: Settings, dist: Path) -> TestClient:
    settings.ui_dir = dist
    return TestClient(create_app(settings))


def _build(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>Orchard app</title>")
    (dist / "assets" / "index-abc123.js").write_text("console.log('orchard')")
    return dist


def test_app_routes_fall_back_to_index_html(settings: Settings, tmp_path: Path) -> None:
    with _client(settings, _build(tmp_path)) as client:
        for path in ("/", "/models", "/system", "/current"):
            response = client.get(path, headers=HTML)
            assert response.status_code == 200, path
            assert "Orchard app" in response.text
        asset = client.get("/assets/index-abc123.js")
        assert asset.status_code == 200
        assert "javascript" in asset.headers["content-type"]


def test_api_paths_are_never_shadowed(settings: Settings, tmp_path: Path) -> None:
    with _client(settings, _build(tmp_path)) as client:
        assert client.get("/health", headers=HTML).json()["status"] == "ok"
        assert client.get("/model/current", headers=HTML).json()["loaded"] is False
        assert client.get("/openapi.json", headers=HTML).json()["info"]["title"] == "Orchard"
        missing = client.get("/model/no-such-route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert client.get("/model/download").status_code == 405  # the API's route, wrong method
        assert client.get("/assets/missing.js").status_code == 404
        assert client.get("/../pyproject.toml").status_code == 404


def test_unbuilt_app_says_how_to_build_it(settings: Settings, tmp_path: Path) -> None:
    with _client(settings, tmp_path / "no-dist") as client:
        page = client.get("/", headers=HTML)
        assert page.status_code == 200
        assert "scripts/start" in page.text
        assert client.get("/health").status_code == 200


def test_app_route_shared_with_an_api_path(settings: Settings, tmp_path: Path) -> None:
    """``/chat`` is the chat page for a browser and ``POST /chat`` for the API."""
    with _client(settings, _build(tmp_path)) as client:
        assert "Orchard app" in client.get("/chat", headers=HTML).text
        api = client.get("/chat")
        assert api.status_code == 405 and api.json()["error"]["code"] == "method_not_allowed"
        assert client.post("/chat", json={"messages": []}).status_code == 422


def test_app_route_that_is_also_an_api_list(settings: Settings, tmp_path: Path) -> None:
    """``/datasets`` is the Datasets page for a browser's page load and the list for the API and the app's fetches."""
    with _client(settings, _build(tmp_path)) as client:
        assert "Orchard app" in client.get("/datasets", headers=HTML).text
        assert client.get("/datasets").json() == {"datasets": []}
        assert client.get("/datasets", headers={"Accept": "application/json"}).json() == {"datasets": []}
