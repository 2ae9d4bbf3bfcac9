"""Downloads as jobs, against a real Hub-compatible server on 127.0.0.1 serving a ~50 MB model.

The server can throttle its transfers, so progress, cancel and resume are observed on a real transfer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from tests.factories import make_model
from tests.hub_server import HubServer

BIG = "orchard-test/big-llama"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~13M parameters in fp32: a ~52 MB safetensors file."""
    return make_model(tmp_path_factory.mktemp("big") / "big-llama", "llama", hidden_size=640, num_layers=3)


@pytest.fixture
def big_hub(hub: HubServer, big_model: Path) -> HubServer:
    hub.add_repo(BIG, big_model)
    return hub


@pytest.fixture
def api(big_hub: HubServer, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def weights_size(big_model: Path) -> int:
    return (big_model / "model.safetensors").stat().st_size


def weight_gets(hub: HubServer) -> list[Any]:
    return [
        r for r in hub.requests if r.method == "GET" and r.path.endswith("model.safetensors") and "/resolve/" in r.path
    ]


def wait_for(client: TestClient, job_id: str, predicate: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/model/jobs/{job_id}").json()
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"job never reached the expected state: {job}"
        time.sleep(0.05)


def sse_events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with client.stream("GET", f"/model/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.split(":", 1)[1])))
    return events


def test_download_job_progress_by_sse(api: TestClient, big_hub: HubServer, big_model: Path) -> None:
    big_hub.throttle_bytes_per_s = 40 * MB
    response = api.post("/model/download", json={"model_id": BIG, "load": False})
    assert response.status_code == 202
    job = response.json()
    assert job["status"] in ("queued", "resolving") and job["model_id"] == BIG
    events = sse_events(api, job["id"])
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) == {"progress"}
    statuses = [e["status"] for _, e in events]
    assert "downloading" in statuses and statuses[-1] == "ready"
    completed = [e["progress"]["completed"] for _, e in events]
    assert completed == sorted(completed), "progress must never go backwards"
    assert all((e["progress"]["percent"] or 0) <= 100 for _, e in events)
    final = events[-1][1]
    total = final["progress"]["total"]
    assert total >= weights_size(big_model) and final["progress"]["completed"] == total
    assert final["progress"]["files_done"] == final["progress"]["files_total"] > 1
    speeds = [e["progress"]["bytes_per_second"] for _, e in events if e["status"] == "downloading"]
    assert any(s for s in speeds), "speed is reported while downloading"
    assert len([c for c in completed if 0 < c < total]) >= 2, "intermediate progress was reported"
    listed = {m["id"]: m for m in api.get("/model/local-models").json()["models"]}
    assert listed[BIG]["complete"] and not listed[BIG]["loaded"]


def test_cancel_then_resume_fetches_only_the_rest(api: TestClient, big_hub: HubServer, big_model: Path) -> None:
    size = weights_size(big_model)
    big_hub.throttle_bytes_per_s = 15 * MB
    job = api.post("/model/download", json={"model_id": BIG, "load": False}).json()
    wait_for(api, job["id"], lambda j: j["progress"]["completed"] > 10 * MB)
    cancelled = api.delete(f"/model/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["job"]["status"] == "cancelled"
    sent_at_cancel = sum(r.body_bytes for r in weight_gets(big_hub))
    assert sent_at_cancel < size, "the transfer stopped before the end"
    time.sleep(0.5)
    assert sum(r.body_bytes for r in weight_gets(big_hub)) == sent_at_cancel, "no bytes flow after cancel"
    listed = {m["id"]: m for m in api.get("/model/local-models").json()["models"]}
    assert BIG not in listed or not listed[BIG]["complete"], "a partial download is never listed as usable"

    big_hub.throttle_bytes_per_s = None
    big_hub.reset_log()
    resumed = api.post(f"/model/jobs/{job['id']}/resume")
    assert resumed.status_code == 202 and resumed.json()["id"] == job["id"]
    done = wait_for(api, job["id"], lambda j: j["status"] not in ("queued", "resolving", "downloading", "verifying"))
    assert done["status"] == "ready", done
    gets = weight_gets(big_hub)
    assert gets and gets[0].range is not None and gets[0].range.startswith("bytes=")
    fetched_again = sum(r.body_bytes for r in gets)
    # The server counts bytes still in socket buffers or in the client's unfinished 1 MiB read as sent; those are
    # fetched again. Everything written to disk before the cancel is not.
    assert fetched_again <= size - sent_at_cancel + 2 * MB, "resume fetched only the rest"


def test_two_requests_share_one_job(api: TestClient, big_hub: HubServer) -> None:
    big_hub.throttle_bytes_per_s = 10 * MB
    first = api.post("/model/download", json={"model_id": BIG, "load": False}).json()
    second = api.post("/model/download", json={"model_id": BIG, "load": False}).json()
    assert first["id"] == second["id"]
    assert [j["id"] for j in api.get("/model/jobs").json()["jobs"]] == [first["id"]]
    api.delete(f"/model/jobs/{first['id']}")


def test_cancel_with_purge_removes_partial_files(api: TestClient, big_hub: HubServer, settings: Settings) -> None:
    big_hub.throttle_bytes_per_s = 15 * MB
    job = api.post("/model/download", json={"model_id": BIG, "load": False}).json()
    wait_for(api, job["id"], lambda j: j["progress"]["completed"] > 5 * MB)
    body = api.delete(f"/model/jobs/{job['id']}", params={"purge": True}).json()
    assert body["job"]["status"] == "cancelled" and body["purged_bytes"] > 4 * MB
    assert not list(settings.hf_cache_dir.rglob("*.incomplete"))


def test_stalled_transfer_is_reported(big_hub: HubServer, settings: Settings) -> None:
    big_hub.throttle_bytes_per_s = 20_000  # far below one 1 MiB read per stall window
    stalling = settings.model_copy(update={"download_stall_seconds": 0.5})
    with TestClient(create_app(stalling)) as client:
        job = client.post("/model/download", json={"model_id": BIG, "load": False}).json()
        stalled = wait_for(client, job["id"], lambda j: j["progress"]["stalled"])
        assert stalled["status"] == "downloading"
        assert client.delete(f"/model/jobs/{job['id']}").json()["job"]["status"] == "cancelled"


def test_missing_repo_is_a_failed_job_with_a_stable_code(api: TestClient) -> None:
    job = api.post("/model/download", json={"model_id": "orchard-test/nope"}).json()
    failed = wait_for(api, job["id"], lambda j: j["status"] == "failed")
    assert failed["error"]["code"] == "model_not_found" and failed["error"]["details"]["status_code"] == 404


def test_disk_quota_refuses_before_any_byte(big_hub: HubServer, settings: Settings) -> None:
    tiny_quota = settings.model_copy(update={"disk_quota_gb": 0.01})  # 10 MB for a 52 MB model
    with TestClient(create_app(tiny_quota)) as client:
        check = client.get(f"/model/check/{BIG}").json()
        assert (
            check["fits_disk"] is False
            and check["fits"] is False
            and check["bytes_to_fetch"] > check["disk_free_bytes"]
        )
        response = client.post("/model/download", json={"model_id": BIG, "wait": True})
        error = response.json()["error"]
        assert response.status_code == 507 and error["code"] == "insufficient_disk"
        assert error["bytes_to_fetch"] > error["disk_free_bytes"] and "ORCHARD_DISK_QUOTA_GB" in error["message"]
    assert weight_gets(big_hub) == []


def test_verdict_counts_only_what_is_not_cached(api: TestClient, big_model: Path) -> None:
    before = api.get(f"/model/check/{BIG}", params={"dtype": "bfloat16"})
    assert before.status_code == 200
    check = before.json()
    assert check["bytes_cached"] < 10_000  # config.json, fetched by the check itself
    assert check["bytes_to_fetch"] == check["bytes_total"] - check["bytes_cached"] >= weights_size(big_model)
    assert check["fits"] and check["num_parameters"] > 10_000_000 and check["dtype"] == "bfloat16"
    assert check["memory_required_gb"] == pytest.approx(check["num_parameters"] * 2 * 1.05 / 1024**3, rel=1e-3)
    api.post("/model/download", json={"model_id": BIG, "load": False, "wait": True})
    after = api.get(f"/model/check/{BIG}").json()
    assert after["bytes_to_fetch"] == 0 and after["bytes_cached"] == check["bytes_total"]


def test_restart_lists_interrupted_job_and_resumes(big_hub: HubServer, settings: Settings) -> None:
    big_hub.throttle_bytes_per_s = 15 * MB
    with TestClient(create_app(settings)) as first:
        job = first.post("/model/download", json={"model_id": BIG, "load": False}).json()
        wait_for(first, job["id"], lambda j: j["progress"]["completed"] > 5 * MB)
    # The first server is gone; a new one finds the job in the database.
    big_hub.throttle_bytes_per_s = None
    with TestClient(create_app(settings)) as second:
        jobs = second.get("/model/jobs").json()["jobs"]
        assert [(j["id"], j["status"]) for j in jobs] == [(job["id"], "interrupted")]
        assert jobs[0]["error"]["code"] == "interrupted" and jobs[0]["progress"]["completed"] > 5 * MB
        big_hub.reset_log()
        second.post(f"/model/jobs/{job['id']}/resume")
        done = wait_for(second, job["id"], lambda j: j["status"] in ("ready", "failed"))
        assert done["status"] == "ready", done
        assert weight_gets(big_hub)[0].range is not None


def test_delete_local_models(api: TestClient, big_hub: HubServer, local_models: Path) -> None:
    api.post("/model/download", json={"model_id": BIG, "wait": True})  # downloaded and loaded
    busy = api.delete(f"/model/local-models/{BIG}")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "model_busy"
    api.post("/model/unload")
    deleted = api.delete(f"/model/local-models/{BIG}")
    assert deleted.status_code == 200 and deleted.json()["freed_bytes"] > 50 * 1_000_000
    gone = api.delete("/model/local-models/tiny-gpt2")
    assert gone.status_code == 200 and not (local_models / "tiny-gpt2").exists()
    assert [m["id"] for m in api.get("/model/local-models").json()["models"]] == ["tiny-llama"]
    assert api.delete("/model/local-models/nothing-here").status_code == 404


def test_delete_refused_while_downloading(api: TestClient, big_hub: HubServer) -> None:
    big_hub.throttle_bytes_per_s = 5 * MB
    job = api.post("/model/download", json={"model_id": BIG, "load": False}).json()
    wait_for(api, job["id"], lambda j: j["status"] == "downloading")
    response = api.delete(f"/model/local-models/{BIG}")
    assert response.status_code in (404, 409)  # not listed yet (no complete file) or refused as downloading
    api.delete(f"/model/jobs/{job['id']}")


def test_unknown_job_is_404(api: TestClient) -> None:
    assert api.get("/model/jobs/nope").status_code == 404
    assert api.delete("/model/jobs/nope").status_code == 404


def _pull(hub: HubServer, settings: Settings, model_id: str) -> subprocess.Popen[str]:
    env = os.environ | {
        "ORCHARD_HOME_DIR": str(settings.home_dir),
        "ORCHARD_HF_CACHE_DIR": str(settings.hf_cache_dir),
        "ORCHARD_HF_ENDPOINT": hub.endpoint,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "pull", model_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )


def test_cli_pull_ctrl_c_then_resume(big_hub: HubServer, settings: Settings, big_model: Path) -> None:
    big_hub.throttle_bytes_per_s = 10 * MB
    first = _pull(big_hub, settings, BIG)
    deadline = time.monotonic() + 60
    while sum(p.stat().st_size for p in settings.hf_cache_dir.rglob("*.incomplete")) < 5 * MB:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130 and "again to resume" in err
    big_hub.throttle_bytes_per_s = None
    big_hub.reset_log()
    second = _pull(big_hub, settings, BIG)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert Path(out.strip().splitlines()[-1]).joinpath("model.safetensors").stat().st_size == weights_size(big_model)
    assert weight_gets(big_hub)[0].range is not None, "the second run resumed"


def test_cli_pull_unknown_model(hub: HubServer, settings: Settings) -> None:
    process = _pull(hub, settings, "orchard-test/nope")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "No model 'orchard-test/nope'" in err


def test_server_killed_mid_download_then_restart_resumes(big_hub: HubServer, settings: Settings) -> None:
    """A real server process killed with SIGKILL: the job is found interrupted by the next start, and resumes."""
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {
        "ORCHARD_HOME_DIR": str(settings.home_dir),
        "ORCHARD_HF_CACHE_DIR": str(settings.hf_cache_dir),
        "ORCHARD_HF_ENDPOINT": big_hub.endpoint,
        "ORCHARD_PORT": str(port),
        "ORCHARD_WARMUP": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve"], env=env, cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    big_hub.throttle_bytes_per_s = 3 * MB  # slow enough that progress is saved (once a second) before the kill
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        job = httpx.post(f"{base}/model/download", json={"model_id": BIG, "load": False}, timeout=10).json()
        while httpx.get(f"{base}/model/jobs/{job['id']}", timeout=5).json()["progress"]["completed"] < 5 * MB:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        server.kill()
        server.wait(timeout=10)
    big_hub.throttle_bytes_per_s = None
    big_hub.reset_log()
    with TestClient(create_app(settings)) as restarted:
        found = restarted.get(f"/model/jobs/{job['id']}").json()
        assert found["status"] == "interrupted" and found["progress"]["completed"] >= 2 * MB  # last saved progress
        restarted.post(f"/model/jobs/{job['id']}/resume")
        done = wait_for(restarted, job["id"], lambda j: j["status"] in ("ready", "failed"))
        assert done["status"] == "ready", done
    resumed_from = weight_gets(big_hub)[0].range
    assert resumed_from is not None and int(resumed_from.split("=")[1].split("-")[0]) >= 4 * MB
