"""Fine-tuning: the memory plan, a LoRA run that learns a synthetic task, cancel and resume, a crash, adapters on
the loaded model, and a merge, all on a tiny pretrained model made by the fixtures and in real training processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from tests.factories import code_task_rows, make_model, pretrain

FINISHED = ("ready", "failed", "cancelled", "interrupted")
# A run that learns the task in a few seconds: high learning rate, no dropout (so runs are exactly repeatable).
FAST = {"learning_rate": 1e-2, "batch_size": 8, "gradient_accumulation_steps": 1, "lora": {"r": 16, "alpha": 32,
        "dropout": 0.0}, "validation_split": 0.2, "seed": 1}  # fmt: skip


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrain(make_model(tmp_path_factory.mktemp("train") / "tiny-base", "llama"))


@pytest.fixture
def client(settings: Settings, base_model: Path) -> Iterator[TestClient]:
    settings.ensure_dirs()
    shutil.copytree(base_model, settings.models_path / "tiny-base")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def upload_rows(client: TestClient, rows: list[dict[str, Any]], name: str = "codes") -> str:
    body = "".join(json.dumps(row) + "\n" for row in rows)
    response = client.post("/datasets", files={"file": (f"{name}.jsonl", body)})
    assert response.status_code == 201, response.text
    dataset_id: str = response.json()["id"]
    return dataset_id


def wait_job(client: TestClient, job_id: str, until: Any = None, timeout: float = 180) -> dict[str, Any]:
    """Poll the job until ``until(job)`` (default: it ended)."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if until(job) if until else job["status"] in FINISHED:
            return job
        assert job["status"] not in FINISHED or until is None, f"the job ended first: {job}"
        assert time.monotonic() < deadline, f"timed out: {job}"
        time.sleep(0.05)


def train(client: TestClient, dataset_id: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/training/jobs", json={"dataset_id": dataset_id, "model_id": "tiny-base", **FAST, **fields})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def chat(client: TestClient, text: str) -> str:
    body = {"messages": [{"role": "user", "content": text}], "max_new_tokens": 64, "temperature": 0, "stream": False}
    response = client.post("/chat", json=body)
    assert response.status_code == 200, response.text
    reply: str = response.json()["message"]["content"]
    return reply.strip()


def test_the_plan_answers_before_anything_starts(client: TestClient, settings: Settings) -> None:
    dataset_id = upload_rows(client, code_task_rows())
    response = client.post("/training/plan", json={"dataset_id": dataset_id, "model_id": "tiny-base", **FAST})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["fits"] is True and plan["device"] == "cpu" and plan["dtype"] == "float32"
    assert plan["train_examples"] + plan["eval_examples"] == len(code_task_rows()) and plan["eval_examples"] == 10
    assert plan["dropped_examples"] == 0 and plan["total_steps"] == 3 * 5  # ceil(38 / 8) steps a epoch, 3 epochs

    # The adapter's size is peft's own count on the real model.
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    real = get_peft_model(
        AutoModelForCausalLM.from_pretrained(settings.models_path / "tiny-base"),
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"),
    )
    assert plan["trainable_parameters"] == real.get_nb_trainable_parameters()[0]
    memory = plan["memory"]
    assert memory["adapter_gb"] == pytest.approx(plan["trainable_parameters"] * 4 / 1024**3, rel=1e-3)
    assert memory["optimizer_gb"] == pytest.approx(2 * memory["adapter_gb"], rel=1e-3)
    assert memory["total_gb"] == pytest.approx(sum(v for k, v in memory.items() if k != "total_gb"), rel=1e-3)
    assert plan["proposed_batch_size"] == 32  # a power of two, at most the rows there are to train on

    # Rows over max_seq_length are left out, and say so; a length no row fits is refused before anything starts.
    short = client.post("/training/plan", json={"dataset_id": dataset_id, "model_id": "tiny-base", "max_seq_length": 8})
    assert short.status_code == 400 and "max_seq_length" in short.json()["error"]["message"]


def test_requests_that_cannot_train_are_refused_before_anything_starts(client: TestClient, settings: Settings) -> None:
    dataset_id = upload_rows(client, code_task_rows())
    missing = client.post("/training/jobs", json={"dataset_id": "0" * 32, "model_id": "tiny-base"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "dataset_not_found"
    no_model = client.post("/training/jobs", json={"dataset_id": dataset_id})
    assert no_model.status_code == 409 and no_model.json()["error"]["code"] == "model_not_loaded"
    bad_targets = client.post(
        "/training/plan",
        json={"dataset_id": dataset_id, "model_id": "tiny-base", "lora": {"target_modules": ["no_such_layer"]}},
    )
    assert bad_targets.status_code == 400 and "target_modules" in bad_targets.json()["error"]["message"]
    unknown_field = client.post("/training/jobs", json={"dataset_id": dataset_id, "model_id": "tiny-base", "lr": 1})
    assert unknown_field.status_code == 422

    settings.memory_safety_margin_gb = 1e6  # no machine has this much to spare: the plan says it does not fit
    with TestClient(create_app(settings)) as tight:
        refused = tight.post("/training/jobs", json={"dataset_id": dataset_id, "model_id": "tiny-base"})
        assert refused.status_code == 507, refused.text
        error = refused.json()["error"]
        assert error["code"] == "insufficient_memory" and error["plan"]["fits"] is False
        assert "batch_size" in error["message"] and "force" in error["message"]
        assert tight.get("/jobs", params={"kind": "train"}).json()["jobs"] == []
    assert not any((settings.outputs_path / "runs").glob("*"))


def test_a_run_learns_the_task_and_its_adapter_answers_in_chat(client: TestClient, settings: Settings) -> None:
    dataset_id = upload_rows(client, code_task_rows())
    job = train(client, dataset_id, epochs=30, name="codes-adapter")
    assert job["status"] == "queued" and job["kind"] == "train" and job["phases"][-1] == "saving"
    seen = wait_job(client, job["id"], until=lambda j: j["status"] == "training")
    assert seen["worker_pid"] and seen["progress"]["unit"] == "steps"
    done = wait_job(client, job["id"])
    assert done["status"] == "ready", done["error"]
    assert done["worker_pid"] is None
    result, progress, history = done["result"], done["progress"], done["history"]

    # Held-out loss falls by more than half; the curve was kept, one point per logged step, eval loss included.
    assert result["eval_loss"] < 0.5 * result["first_eval_loss"], result
    assert progress["completed"] == progress["total"] == result["steps"] == 150
    assert history[0]["step"] == 0 and history[0]["eval_loss"] == pytest.approx(result["first_eval_loss"])
    assert [p["step"] for p in history] == sorted({p["step"] for p in history})
    assert sum(p["loss"] is not None for p in history) >= 100 and progress["tokens_per_second"] > 0
    assert history[-1]["eval_loss"] == pytest.approx(result["eval_loss"], rel=1e-4)

    # The tuned model answers like the task; the base model does not.
    samples = result["samples"]
    assert len(samples) == 3
    for sample in samples:
        assert sample["tuned"].startswith("The code for") and not sample["base"].startswith("The code for")

    # The adapter is listed, complete, with what it was trained with; the run's checkpoints are gone.
    adapters = client.get("/adapters").json()["adapters"]
    assert [a["id"] for a in adapters] == [job["id"]]
    adapter = adapters[0]
    assert adapter["name"] == "codes-adapter" and adapter["base_model_id"] == "tiny-base"
    assert adapter["chat_template"] and adapter["eos_token"] == "</s>" and adapter["steps"] == 150
    assert (Path(adapter["path"]) / "adapter_model.safetensors").is_file()
    assert not (settings.outputs_path / "runs" / job["id"]).exists()

    # Chat answers through the adapter exactly as the job's comparison did, and as the base once it is off.
    question = samples[0]["prompt"]
    assert client.post("/model/load", json={"model_id": "tiny-base", "wait": True}).status_code == 200
    assert chat(client, question) == samples[0]["base"]
    attached = client.post("/model/adapter", json={"adapter_id": job["id"]})
    assert attached.status_code == 200, attached.text
    assert attached.json()["adapter"] == {"id": job["id"], "name": "codes-adapter"}
    assert client.get("/model/current").json()["metadata"]["adapter"]["id"] == job["id"]
    assert chat(client, question) == samples[0]["tuned"]
    busy = client.delete(f"/adapters/{job['id']}")
    assert busy.status_code == 409
    assert client.delete("/model/adapter").json()["adapter"] is None
    assert chat(client, question) == samples[0]["base"]

    # Merged into a new local model: its logits are the adapter's.
    merge = client.post(f"/adapters/{job['id']}/merge", json={"name": "tiny-base-codes"})
    assert merge.status_code == 202, merge.text
    merged = wait_job(client, merge.json()["id"])
    assert merged["status"] == "ready" and merged["result"] == "tiny-base-codes", merged["error"]
    assert "tiny-base-codes" in {m["id"] for m in client.get("/model/local-models").json()["models"]}
    assert not list(settings.models_path.glob(".tmp-*"))
    assert_same_logits(
        settings.models_path / "tiny-base", Path(adapter["path"]), settings.models_path / "tiny-base-codes"
    )
    taken = client.post(f"/adapters/{job['id']}/merge", json={"name": "tiny-base-codes"})
    assert taken.status_code == 409

    # Attaching checks the base model and the chat template the adapter was trained with.
    assert client.post("/model/load", json={"model_id": "tiny-base-codes", "wait": True}).status_code == 200
    other = client.post("/model/adapter", json={"adapter_id": job["id"]})
    assert other.status_code == 409 and other.json()["error"]["code"] == "model_not_loaded"
    assert client.post("/model/load", json={"model_id": "tiny-base", "wait": True}).status_code == 200
    meta = Path(adapter["path"]) / "orchard_adapter.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "chat_template": "{{ messages }}"}))
    mismatch = client.post("/model/adapter", json={"adapter_id": job["id"]})
    assert mismatch.status_code == 409 and mismatch.json()["error"]["code"] == "chat_template_mismatch"
    assert client.post("/model/adapter", json={"adapter_id": job["id"], "force": True}).status_code == 200
    # A damaged adapter is refused and the model stays loaded, with no adapter on it (the one before came off).
    damaged = settings.outputs_path / "adapters" / "ffffffffffff"
    shutil.copytree(adapter["path"], damaged)
    (damaged / "orchard_adapter.json").write_text(json.dumps({**json.loads(meta.read_text()), "id": "ffffffffffff"}))
    (damaged / "adapter_model.safetensors").write_bytes(b"not safetensors")
    broken = client.post("/model/adapter", json={"adapter_id": "ffffffffffff", "force": True})
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "invalid_model"
    current = client.get("/model/current").json()["metadata"]
    assert current["model_id"] == "tiny-base" and current["adapter"] is None
    assert chat(client, question) == samples[0]["base"]
    assert client.delete("/adapters/ffffffffffff").status_code == 200

    assert client.delete(f"/adapters/{job['id']}").status_code == 200
    assert client.get("/adapters").json()["adapters"] == []


def assert_same_logits(base: Path, adapter: Path, merged: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46, 47]])
    with torch.no_grad():
        with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)(ids).logits
        folded = AutoModelForCausalLM.from_pretrained(merged)(ids).logits
    assert (with_adapter - folded).abs().max().item() < 1e-3


def test_cancel_then_resume_ends_where_an_uninterrupted_run_ends(client: TestClient, settings: Settings) -> None:
    dataset_id = upload_rows(client, code_task_rows())
    whole = wait_job(client, train(client, dataset_id, max_steps=120)["id"])
    assert whole["status"] == "ready", whole["error"]

    job = train(client, dataset_id, max_steps=120)
    # Runs go one at a time: a second waits queued, and cancelling it ends it at once, without a process.
    waiting = train(client, dataset_id, max_steps=120)
    assert client.get(f"/jobs/{waiting['id']}").json()["status"] == "queued"
    wait_job(client, job["id"], until=lambda j: j["progress"]["completed"] >= 20)
    assert client.get(f"/jobs/{waiting['id']}").json()["status"] == "queued"
    never = client.delete(f"/jobs/{waiting['id']}").json()["job"]
    assert never["status"] == "cancelled" and never["worker_pid"] is None
    assert client.delete("/jobs", params={"kind": "train"}).json()["removed"] >= 1  # cleared: its folder goes too
    assert not (settings.outputs_path / "runs" / waiting["id"]).exists()
    cancelled = client.delete(f"/jobs/{job['id']}")
    assert cancelled.status_code == 200
    stopped = wait_job(client, job["id"])
    assert stopped["status"] == "cancelled" and stopped["resumable"] is True
    step = stopped["progress"]["completed"]
    assert 20 <= step < 120, "the cancel should land mid-run"
    checkpoints = list((settings.outputs_path / "runs" / job["id"] / "checkpoints").glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == [f"checkpoint-{step}"]  # saved where it stopped
    assert client.get("/adapters").json()["adapters"][0]["id"] == whole["id"]  # nothing half-registered

    assert client.post(f"/jobs/{job['id']}/resume").status_code == 202
    resumed = wait_job(client, job["id"])
    assert resumed["status"] == "ready", resumed["error"]
    assert resumed["result"]["train_loss"] == pytest.approx(whole["result"]["train_loss"], abs=1e-3)
    assert resumed["result"]["eval_loss"] == pytest.approx(whole["result"]["eval_loss"], abs=1e-3)
    # One curve: every step once, the same losses as the uninterrupted run's.
    losses = {p["step"]: p["loss"] for p in resumed["history"] if p["loss"] is not None}
    expected = {p["step"]: p["loss"] for p in whole["history"] if p["loss"] is not None}
    assert losses.keys() == expected.keys()
    assert max(abs(losses[s] - expected[s]) for s in losses) < 1e-3


def test_a_killed_training_process_fails_the_job_and_a_resume_goes_on(client: TestClient, settings: Settings) -> None:
    dataset_id = upload_rows(client, code_task_rows())
    job = train(client, dataset_id, max_steps=400)
    # Past the first periodic checkpoint (every tenth of the run), then the process dies as the OOM killer would.
    running = wait_job(client, job["id"], until=lambda j: j["progress"]["completed"] >= 50)
    os.kill(running["worker_pid"], signal.SIGKILL)
    failed = wait_job(client, job["id"])
    assert failed["status"] == "failed" and failed["resumable"] is True
    assert failed["error"]["code"] == "training_failed"
    assert "SIGKILL" in failed["error"]["message"] and "memory" in failed["error"]["message"]
    assert client.get("/model/health").status_code == 200  # the server did not notice beyond the job
    assert client.get("/adapters").json()["adapters"] == []

    assert client.post(f"/jobs/{job['id']}/resume").status_code == 202
    resumed = wait_job(client, job["id"])
    assert resumed["status"] == "ready", resumed["error"]
    assert resumed["result"]["steps"] == 400 and len(client.get("/adapters").json()["adapters"]) == 1


def test_a_server_restart_leaves_the_run_interrupted_and_resumable(settings: Settings, base_model: Path) -> None:
    settings.ensure_dirs()
    shutil.copytree(base_model, settings.models_path / "tiny-base")
    with TestClient(create_app(settings)) as first:
        dataset_id = upload_rows(first, code_task_rows())
        job = train(first, dataset_id, max_steps=400)
        wait_job(first, job["id"], until=lambda j: j["progress"]["completed"] >= 5)
    # The shutdown stopped the run at a step, with a checkpoint; the next server lists it as interrupted.
    with TestClient(create_app(settings)) as second:
        interrupted = second.get(f"/jobs/{job['id']}").json()
        assert interrupted["status"] == "interrupted" and interrupted["resumable"] is True
        step = interrupted["progress"]["completed"]
        assert (settings.outputs_path / "runs" / job["id"] / "checkpoints" / f"checkpoint-{step}").is_dir()
        assert second.post(f"/jobs/{job['id']}/resume").status_code == 202
        done = wait_job(second, job["id"])
        assert done["status"] == "ready", done["error"]
        assert [p["step"] for p in done["history"]] == sorted({p["step"] for p in done["history"]})


def test_two_processes_under_torchrun_train_one_adapter_of_the_same_format(base_model: Path, tmp_path: Path) -> None:
    """The same training entry point under DDP (gloo on CPU): rank 0 reports and saves, both ranks train."""
    import subprocess
    import sys

    data = tmp_path / "codes.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in code_task_rows()))
    out = tmp_path / "ddp-run"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "backend.cli", "train"]
    command += ["--model", str(base_model), "--data", str(data), "--out", str(out), "--device", "cpu"]
    command += ["--max-steps", "10", "--batch-size", "4", "--learning-rate", "0.01", "--lora-dropout", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    plan = next(e for e in events if e["event"] == "plan")
    assert plan["total_steps"] == 10
    assert [e["event"] for e in events].count("done") == 1  # rank 0 alone reports
    meta = json.loads((out / "adapter" / "orchard_adapter.json").read_text())
    assert meta["steps"] == 10 and meta["lora"]["r"] == 8
    # The adapter loads on the base model like one trained in one process.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), out / "adapter")
    assert model.get_nb_trainable_parameters()[0] == 0  # loaded for inference
    targets = json.loads((out / "adapter" / "adapter_config.json").read_text())["target_modules"]
    assert any(name.endswith("self_attn.q_proj") for name in targets)
