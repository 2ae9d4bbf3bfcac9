"""Model info and downloads against a real Hub-compatible server on 127.0.0.1 (no patching of huggingface_hub)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from backend.config import Settings
from backend.main import create_app
from backend.services.model_service import ModelService
from tests.conftest import UNREACHABLE_HUB
from tests.factories import count_params
from tests.hub_server import HubServer

TOKEN = "hf_good_token"


@pytest.fixture
def api(hub: HubServer, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def weight_bytes_fetched(hub: HubServer) -> int:
    """Body bytes of weight files served, header reads (Range requests of a few kB) included."""
    return sum(r.body_bytes for r in hub.requests if r.method == "GET" and r.path.endswith((".safetensors", ".bin")))


def test_info_without_downloading_weights(api: TestClient, hub: HubServer, model_store: Path) -> None:
    response = api.get("/model/info/orchard-test/tiny-llama")
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["architecture"] == "LlamaForCausalLM" and info["model_type"] == "llama"
    assert info["num_parameters"] == count_params(model_store / "tiny-llama")
    assert info["parameters_by_dtype"] == {"F32": info["num_parameters"]}
    sizes = {f["path"]: f["size"] for f in info["files"]}
    assert sizes["model.safetensors"] == (model_store / "tiny-llama" / "model.safetensors").stat().st_size
    assert info["weights_size_bytes"] == sizes["model.safetensors"] and info["weight_format"] == "safetensors"
    assert info["memory"]["fits"] is True and info["memory"]["dtype"] == "float32"
    assert info["estimated_memory_gb"] == pytest.approx(info["num_parameters"] * 4 * 1.05 / 1024**3, rel=1e-3)
    assert info["context_length"] == 256 and len(info["sha"]) == 40
    assert weight_bytes_fetched(hub) < 100_000  # at most a header read, never the weights


def test_info_for_an_id_without_organisation_and_other_dtype(api: TestClient) -> None:
    info = api.get("/model/info/tiny-gpt2", params={"dtype": "bfloat16"}).json()
    assert info["model_type"] == "gpt2" and info["memory"]["dtype"] == "bfloat16"
    assert info["memory"]["required_gb"] == pytest.approx(info["num_parameters"] * 2 * 1.05 / 1024**3, rel=1e-3)


def test_download_loads_and_lists(api: TestClient, settings: Settings) -> None:
    response = api.post("/model/download", json={"model_id": "orchard-test/tiny-llama", "wait": True})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    meta = response.json()["result"]
    assert meta["source"] == "hub" and meta["model_id"] == "orchard-test/tiny-llama" and len(meta["revision"]) == 40
    assert Path(meta["path"]).is_relative_to(settings.hf_cache_dir)
    listed = {m["id"]: m for m in api.get("/model/local-models").json()["models"]}
    entry = listed["orchard-test/tiny-llama"]
    assert (
        entry["source"] == "hub-cache"
        and entry["complete"]
        and entry["loaded"]
        and entry["revision"] == meta["revision"]
    )


def test_seed_python_calls_against_the_hub(hub: HubServer, settings: Settings) -> None:
    service = ModelService(settings)
    info = service.get_model_info("tiny-gpt2")
    model, _, metadata = service.load_from_hub("tiny-gpt2")
    assert metadata["num_parameters"] == info["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert metadata["estimated_memory_gb"] > 0 and metadata["device"] == "cpu"
    assert [m["id"] for m in service.list_local_models()] == ["tiny-gpt2"]


def test_downloaded_model_loads_offline_by_id(api: TestClient, settings: Settings) -> None:
    assert api.post("/model/download", json={"model_id": "tiny-gpt2", "wait": True}).status_code == 200
    api.post("/model/unload")
    settings.hf_endpoint = UNREACHABLE_HUB
    with TestClient(create_app(settings)) as offline:
        response = offline.post("/model/upload", params={"model_path": "tiny-gpt2"})
    assert response.status_code == 200 and response.json()["metadata"]["source"] == "local"


def test_gated_model_needs_a_good_token(api: TestClient) -> None:
    anonymous = api.post("/model/download", json={"model_id": "orchard-test/gated-llama", "wait": True})
    assert anonymous.status_code == 401
    assert (
        anonymous.json()["error"]["code"] == "repo_access_denied"
        and "access_token" in anonymous.json()["error"]["message"]
    )
    wrong = api.post(
        "/model/download",
        json={"model_id": "orchard-test/gated-llama", "access_token": "hf_wrong_token", "wait": True},
    )
    assert wrong.status_code == 403 and "hf_wrong_token" not in wrong.text
    good = api.post(
        "/model/download", json={"model_id": "orchard-test/gated-llama", "access_token": TOKEN, "wait": True}
    )
    assert good.status_code == 200 and TOKEN not in good.text


def test_private_model_is_not_found_without_token(api: TestClient) -> None:
    assert api.get("/model/info/orchard-test/private-llama").status_code == 404
    response = api.get("/model/info/orchard-test/private-llama", params={"access_token": TOKEN})
    assert response.status_code == 200 and response.json()["private"] is True


def test_configured_token_is_used(hub: HubServer, settings: Settings) -> None:
    configured = settings.model_copy(update={"hf_token": SecretStr(TOKEN)})  # as HF_TOKEN would set it
    with TestClient(create_app(configured)) as client:
        assert client.get("/model/info/orchard-test/private-llama").status_code == 200


def test_unknown_repo_and_revision(api: TestClient) -> None:
    missing = api.post("/model/download", json={"model_id": "orchard-test/does-not-exist", "wait": True})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    revision = api.post("/model/download", json={"model_id": "orchard-test/tiny-llama", "revision": "v9", "wait": True})
    assert revision.status_code == 404 and revision.json()["error"]["code"] == "revision_not_found"
    assert api.get("/model/local-models").json()["models"] == []


def test_hub_down_is_502(local_models: Path, settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.post("/model/download", json={"model_id": "orchard-test/tiny-llama", "wait": True})
    assert response.status_code == 502 and response.json()["error"]["code"] == "hub_unavailable"


def test_too_big_is_refused_before_any_weight_byte(hub: HubServer, settings: Settings) -> None:
    tight = settings.model_copy(update={"memory_safety_margin_gb": 10_000.0})
    with TestClient(create_app(tight)) as client:
        response = client.post("/model/download", json={"model_id": "orchard-test/tiny-llama", "wait": True})
        error = response.json()["error"]
        assert response.status_code == 507 and error["code"] == "insufficient_memory"
        assert error["required_gb"] > 0 and "force=true" in error["message"]
        assert weight_bytes_fetched(hub) == 0
        assert client.get("/model/local-models").json()["models"] == []
        forced = client.post(
            "/model/download", json={"model_id": "orchard-test/tiny-llama", "force": True, "wait": True}
        )
        assert forced.status_code == 200


def test_pickle_only_repo_is_refused_before_download(api: TestClient, hub: HubServer) -> None:
    response = api.post("/model/download", json={"model_id": "orchard-test/pickle-llama", "wait": True})
    assert response.status_code == 403 and response.json()["error"]["code"] == "unsafe_model"
    assert weight_bytes_fetched(hub) == 0
