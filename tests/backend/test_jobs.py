"""The one job system: load jobs (progress, cancel, wait), the /jobs routes over every kind, pruning and restarts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open

from backend.config import Settings
from backend.errors import JobCancelled
from backend.main import create_app
from backend.schemas.jobs import LoadJob
from backend.services.job_store import JobStore
from backend.services.model_service import ModelService, process_cache
from backend.utils.libraries import import_lock
from tests.factories import make_model
from tests.hub_server import HubServer

MB = 1024 * 1024


@pytest.fixture(scope="module")
def deep_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrow model with many layers: ~870 tensors, so a load takes a few tenths of a second."""
    return make_model(tmp_path_factory.mktemp("deep") / "deep-llama", "llama", num_layers=96)


def load(service: ModelService, folder: Path, **hooks: Any) -> Any:
    """``load_folder`` as the load jobs call it, on the CPU in fp32."""
    return service.load_folder(
        folder,
        model_id=folder.name,
        source="local",
        revision=None,
        dtype="float32",
        device="cpu",
        force=False,
        trust_remote_code=False,
        **hooks,
    )


def tensor_count(folder: Path) -> int:
    with safe_open(folder / "model.safetensors", "pt") as weights:
        return len(list(weights.keys()))


def wait_job(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("ready", "failed", "cancelled", "interrupted"):
            return job
        assert time.monotonic() < deadline, f"job never ended: {job}"
        time.sleep(0.02)


def sse(client: TestClient, path: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
    return events


# --------------------------------------------------------------------- load jobs


def test_load_job_runs_its_phases_and_counts_the_tensors(client: TestClient, local_models: Path) -> None:
    response = client.post("/model/load", json={"model_id": "tiny-llama"})
    assert response.status_code == 202
    job = response.json()
    assert job["kind"] == "load" and job["status"] == "queued" and job["title"] == "Load tiny-llama"
    assert job["phases"] == ["queued", "preparing", "loading"] and job["progress"]["unit"] == "tensors"

    events = sse(client, f"/jobs/{job['id']}/events")
    assert events[-1][0] == "end"
    final = events[-1][1]
    assert final["status"] == "ready" and final["error"] is None and not final["resumable"]
    # The count is transformers' own: one step per tensor in the checkpoint, not a timer.
    assert final["progress"]["completed"] == final["progress"]["total"] == tensor_count(local_models / "tiny-llama")
    assert final["result"]["model_id"] == "tiny-llama" and final["path"] == str(local_models / "tiny-llama")
    completed = [data["progress"]["completed"] for _, data in events]
    assert completed == sorted(completed)
    current = client.get("/model/current").json()
    assert current["metadata"]["model_id"] == "tiny-llama" and current["activity"] == "idle"
    assert current["loading_job"] is None


def test_load_progress_moves_tensor_by_tensor(settings: Settings, deep_llama: Path) -> None:
    """The callback sees every tensor of the checkpoint, in order, as transformers loads it."""
    service = ModelService(settings)
    seen: list[tuple[int, int | None]] = []
    loaded = load(service, deep_llama, on_progress=lambda done, total: seen.append((done, total)))
    total = tensor_count(deep_llama)
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [done for done, _ in seen] == list(range(total + 1))
    assert process_cache().current is loaded


def test_cancel_during_the_weights_keeps_the_previous_model(
    settings: Settings, local_models: Path, deep_llama: Path
) -> None:
    """Cancelled with a tenth of the tensors loaded: the load stops there and the old model stays, untouched."""
    service = ModelService(settings)
    before = service.load_local_model(local_models / "tiny-llama")
    weights = {name: p.detach().clone() for name, p in before.model.named_parameters()}
    stop = threading.Event()
    seen: list[int] = []

    def on_progress(done: int, total: int | None) -> None:
        seen.append(done)
        if total and done >= total // 10:
            stop.set()

    with pytest.raises(JobCancelled):
        load(service, deep_llama, on_progress=on_progress, cancelled=stop.is_set)
    total = tensor_count(deep_llama)
    assert max(seen) <= total // 10 + 1, "the load went on after the cancel"
    assert process_cache().current is before
    for name, p in before.model.named_parameters():
        assert p.data_ptr() and bool((p == weights[name]).all()), name
    assert service.cache.loading is None  # the slot is free for the next load
    assert load(service, deep_llama).metadata.model_id == "deep-llama"


def test_cancelled_load_job_keeps_the_previous_model(client: TestClient, local_models: Path, deep_llama: Path) -> None:
    assert client.post("/model/load", json={"model_id": "tiny-llama", "wait": True}).status_code == 200
    before = process_cache().current
    job = client.post("/model/load", json={"model_path": str(deep_llama)}).json()
    cancelled = client.delete(f"/jobs/{job['id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["job"]["status"] == "cancelled" and cancelled.json()["job"]["resumable"]
    assert process_cache().current is before
    assert client.get("/model/current").json()["metadata"]["model_id"] == "tiny-llama"
    # Resuming a cancelled load runs it again.
    resumed = client.post(f"/jobs/{job['id']}/resume")
    assert resumed.status_code == 202
    assert wait_job(client, job["id"])["status"] == "ready"
    assert client.get("/model/current").json()["metadata"]["model_id"] == "deep-llama"


def test_load_wait_answers_like_the_seed(client: TestClient, local_models: Path, settings: Settings) -> None:
    done = client.post("/model/load", json={"model_id": "tiny-gpt2", "wait": True})
    assert done.status_code == 200
    assert done.json()["status"] == "ready" and done.json()["result"]["architecture"] == "GPT2LMHeadModel"
    # The seed's blocking call runs the same job and keeps its answer.
    seed = client.post("/model/upload", params={"model_path": str(local_models / "tiny-llama")})
    assert seed.status_code == 200 and seed.json()["status"] == "loaded"
    assert seed.json()["metadata"]["model_id"] == "tiny-llama"
    loads = client.get("/jobs", params={"kind": "load"}).json()["jobs"]
    assert [j["model_id"] for j in loads] == ["tiny-llama", "tiny-gpt2"]

    # What the request names is checked at once: no job is made for a folder that is not there or not allowed.
    missing = client.post("/model/load", json={"model_path": str(local_models / "nope")})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    outside = client.post("/model/load", json={"model_path": "/etc"})
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "path_not_allowed"
    both = client.post("/model/load", json={"model_id": "tiny-llama", "model_path": str(local_models / "tiny-llama")})
    assert both.status_code == 400
    assert client.post("/model/load", json={}).status_code == 400
    assert client.post("/model/load", json={"model_id": "tiny-llama", "extra": 1}).status_code == 422
    assert len(client.get("/jobs", params={"kind": "load"}).json()["jobs"]) == 2


def test_a_load_that_does_not_fit_fails_with_507_unless_forced(settings: Settings, local_models: Path) -> None:
    settings.memory_safety_margin_gb = 1e6  # nothing fits
    with TestClient(create_app(settings)) as client:
        waited = client.post("/model/load", json={"model_id": "tiny-llama", "wait": True})
        assert waited.status_code == 507 and waited.json()["error"]["code"] == "insufficient_memory"
        job = client.post("/model/load", json={"model_id": "tiny-llama"}).json()
        failed = wait_job(client, job["id"])
        assert failed["status"] == "failed" and failed["resumable"]
        assert failed["error"]["code"] == "insufficient_memory" and failed["error"]["details"]["status_code"] == 507
        assert client.get("/model/current").json()["loaded"] is False
        forced = client.post("/model/load", json={"model_id": "tiny-llama", "force": True, "wait": True})
        assert forced.status_code == 200


def test_current_model_says_what_the_cache_is_doing(client: TestClient, local_models: Path) -> None:
    client.post("/model/load", json={"model_id": "tiny-llama", "wait": True})
    assert process_cache().borrow() is not None  # what a chat generation does while it runs
    try:
        current = client.get("/model/current").json()
        assert current["activity"] == "generating" and current["generations"] == 1
    finally:
        process_cache().give_back()
    with process_cache().loading_slot("other-model"):
        current = client.get("/model/current").json()
        assert current["activity"] == "loading" and current["loading"] == "other-model"
    assert client.get("/model/current").json()["activity"] == "idle"


# --------------------------------------------------------------------- one API over every kind


def test_jobs_api_serves_downloads_and_loads(hub: HubServer, client: TestClient, local_models: Path) -> None:
    download = client.post("/model/download", json={"model_id": "orchard-test/tiny-llama", "load": False}).json()
    load = client.post("/model/load", json={"model_id": "tiny-gpt2"}).json()
    assert wait_job(client, download["id"])["status"] == "ready"
    assert wait_job(client, load["id"])["status"] == "ready"

    everything = client.get("/jobs").json()["jobs"]
    assert [j["kind"] for j in everything] == ["load", "download"]  # newest first
    assert everything[1]["phases"] == ["queued", "resolving", "downloading", "verifying", "loading"]
    assert everything[1]["progress"]["unit"] == "bytes" and everything[1]["title"] == "Download orchard-test/tiny-llama"
    assert [j["id"] for j in client.get("/jobs", params={"kind": "download"}).json()["jobs"]] == [download["id"]]
    assert [j["id"] for j in client.get("/jobs", params={"limit": 1}).json()["jobs"]] == [load["id"]]
    about = client.get("/jobs", params={"model_id": "orchard-test/tiny-llama", "limit": 1}).json()["jobs"]
    assert [j["id"] for j in about] == [download["id"]]  # the newest job about that model, not the newest job
    assert client.get("/jobs", params={"model_id": "tiny-gpt2", "kind": "download"}).json()["jobs"] == []
    assert client.get("/jobs", params={"collection_id": "c1"}).json()["jobs"] == []  # no job has that field
    assert len(client.get("/jobs", params={"status": "ready"}).json()["jobs"]) == 2
    assert client.get("/jobs", params={"status": "active"}).json()["jobs"] == []
    assert len(client.get("/jobs", params={"status": "finished"}).json()["jobs"]) == 2
    assert client.get("/jobs", params={"kind": "cooking"}).status_code == 422

    # Either job by the one route, its events included; the older download routes see downloads only.
    assert client.get(f"/jobs/{download['id']}").json()["model_id"] == "orchard-test/tiny-llama"
    assert sse(client, f"/jobs/{load['id']}/events")[-1][1]["status"] == "ready"
    assert [j["id"] for j in client.get("/model/jobs").json()["jobs"]] == [download["id"]]
    assert client.get(f"/model/jobs/{download['id']}").status_code == 200
    assert client.get(f"/model/jobs/{load['id']}").status_code == 404

    unknown = client.get("/jobs/nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"
    assert client.get("/jobs/nope/events").status_code == 404
    assert client.delete("/jobs/nope").status_code == 404
    done = client.post(f"/jobs/{load['id']}/resume")
    assert done.status_code == 400 and "already done" in done.json()["error"]["message"]


def test_finished_jobs_are_pruned_and_can_be_cleared(settings: Settings, local_models: Path) -> None:
    settings.job_history_limit = 3
    with TestClient(create_app(settings)) as client:
        ids = [client.post("/model/load", json={"model_id": "tiny-llama", "wait": True}).json()["id"] for _ in range(5)]
        kept = [j["id"] for j in client.get("/jobs").json()["jobs"]]
        assert kept == ids[:-4:-1]  # the newest three
        assert client.get(f"/jobs/{ids[0]}").status_code == 404
    with TestClient(create_app(settings)) as client:  # the store was pruned too
        assert [j["id"] for j in client.get("/jobs").json()["jobs"]] == ids[:-4:-1]
        cleared = client.delete("/jobs", params={"kind": "download"})
        assert cleared.json() == {"removed": 0}
        assert client.delete("/jobs").json() == {"removed": 3}
        assert client.get("/jobs").json()["jobs"] == []
    with TestClient(create_app(settings)) as client:
        assert client.get("/jobs").json()["jobs"] == []


def test_clearing_keeps_running_jobs(api_with_big_hub: TestClient, big_hub: HubServer) -> None:
    client = api_with_big_hub
    finished = client.post("/model/load", json={"model_id": "tiny-llama", "wait": True}).json()
    big_hub.throttle_bytes_per_s = 5 * MB
    running = client.post("/model/download", json={"model_id": "orchard-test/big-llama", "load": False}).json()
    assert client.delete("/jobs").json() == {"removed": 1}
    assert [j["id"] for j in client.get("/jobs").json()["jobs"]] == [running["id"]]
    assert client.get(f"/jobs/{finished['id']}").status_code == 404
    client.delete(f"/jobs/{running['id']}")


@pytest.fixture
def big_hub(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> HubServer:
    hub.add_repo("orchard-test/big-llama", make_model(tmp_path_factory.mktemp("big") / "big", "llama", hidden_size=512))
    return hub


@pytest.fixture
def api_with_big_hub(big_hub: HubServer, settings: Settings, local_models: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_restart_turns_a_running_load_into_interrupted_then_resume_loads(
    settings: Settings, local_models: Path
) -> None:
    """A load the server was running when it stopped: listed as interrupted after the restart, and resumable."""
    settings.ensure_dirs()
    store = JobStore(settings.data_path / "orchard.db")
    now = time.time()
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(now, UTC)
    store.save(
        LoadJob(
            id="a1b2c3d4e5f6",
            kind="load",
            title="Load tiny-llama",
            status="loading",
            model_id="tiny-llama",
            path=str(local_models / "tiny-llama"),
            created_at=stamp,
            updated_at=stamp,
        )
    )
    store.close()
    with TestClient(create_app(settings)) as client:
        job = client.get("/jobs/a1b2c3d4e5f6").json()
        assert job["status"] == "interrupted" and job["resumable"] and job["error"]["code"] == "interrupted"
        assert client.post("/jobs/a1b2c3d4e5f6/resume").status_code == 202
        assert wait_job(client, "a1b2c3d4e5f6")["status"] == "ready"
        assert client.get("/model/current").json()["metadata"]["model_id"] == "tiny-llama"


def test_a_load_during_the_warmup_waits_for_it(settings: Settings, local_models: Path) -> None:
    """While the start-up warm-up holds the library lock, a load job waits in ``preparing`` (and says so in
    /model/current) instead of racing the imports; cancelled there, it leaves the loaded model alone."""
    before = ModelService(settings).load_local_model(local_models / "tiny-gpt2")  # also keeps gc.freeze() away
    settings.warmup = True
    with import_lock(), TestClient(create_app(settings)) as client:  # the warm-up cannot get past this lock
        assert client.get("/health").json()["warmup"] == "running"
        job = client.post("/model/load", json={"model_id": "tiny-llama"}).json()
        deadline = time.monotonic() + 10
        while client.get(f"/jobs/{job['id']}").json()["status"] != "preparing":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "preparing"
        current = client.get("/model/current").json()
        assert current["activity"] == "loading" and current["loading_job"]["id"] == job["id"]
        assert current["metadata"]["model_id"] == "tiny-gpt2"
        assert client.delete(f"/jobs/{job['id']}").json()["job"]["status"] == "cancelled"
        assert process_cache().current is before
        service: ModelService = client.app.state.model_service  # type: ignore[attr-defined]
    # The lock is free: the warm-up finishes now, while the model is still loaded, before the next test runs.
    assert service.wait_for_warmup(timeout=60) and service.warmup_state == "done"
