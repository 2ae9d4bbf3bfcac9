"""The Training page against the real backend: the plan's verdict as the form changes, a real LoRA fine-tune of a
tiny pretrained model followed live (the loss curve grows) to Ready with the answers before and after, and its
adapter put on the loaded model and shown as the current model's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.support import Orchard, screenshot
from tests.factories import code_task_rows, make_model, pretrain

# A run that learns the synthetic task in seconds on a CPU: 38 training rows, batch 8, 30 epochs = 150 steps.
FIELDS = {
    "Adapter name (optional)": "codes-adapter",
    "Epochs": "30",
    "Learning rate": "0.01",
    "Batch size": "8",
    "Gradient accumulation steps": "1",
    "LoRA rank (r)": "16",
    "LoRA alpha": "32",
    "LoRA dropout": "0",
    "Validation split": "0.2",
}
REQUEST = {
    "name": "codes-adapter",
    "epochs": 30,
    "learning_rate": 0.01,
    "batch_size": 8,
    "gradient_accumulation_steps": 1,
    "lora": {"r": 16, "alpha": 32, "dropout": 0},
    "validation_split": 0.2,
}
RUN_TIMEOUT_MS = 150_000  # the process start (~15 s of imports) and 150 steps on a busy 2-core machine


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama trained in full on a few sentences, so LoRA can move its loss (see tests.factories.pretrain)."""
    return pretrain(make_model(tmp_path_factory.mktemp("e2e-train") / "tiny-base", "llama"))


@pytest.fixture
def local_models(local_models: Path, tiny_base: Path) -> Path:
    """The models directory as the e2e conftest fills it, plus tiny-base."""
    shutil.copytree(tiny_base, local_models / "tiny-base")
    return local_models


def _loss(value: float) -> str:
    """A loss as the page writes it: three significant digits, trailing zeros kept (JavaScript's toPrecision(3))."""
    return f"{value:#.3g}"


def _wait_for_status(run: Locator, orchard: Orchard, job_id: str, *statuses: str) -> None:
    """Wait until the run's badge shows one of ``statuses``; a failed run fails the test at once, with its error."""
    badge = run.get_by_text(re.compile(f"^({'|'.join([*statuses, 'Failed', 'Cancelled', 'Interrupted'])})$"))
    expect(badge).to_be_visible(timeout=RUN_TIMEOUT_MS)
    shown = badge.inner_text()
    assert shown in statuses, f"the run is {shown}: {orchard.get(f'/jobs/{job_id}').json().get('error')}"


def _upload_codes(orchard: Orchard) -> str:
    body = "".join(json.dumps(row) + "\n" for row in code_task_rows())
    response = orchard.post("/datasets", files={"file": ("codes.jsonl", body)}, data={"name": "codes"})
    assert response.status_code == 201, response.text
    dataset_id: str = response.json()["id"]
    return dataset_id


def test_fine_tune_from_the_page_watch_the_loss_fall_and_use_the_adapter_in_chat(page: Page, orchard: Orchard) -> None:
    dataset_id = _upload_codes(orchard)
    assert orchard.post("/model/load", json={"model_id": "tiny-base", "wait": True}, timeout=60).status_code == 200
    page.goto("/training")
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Training", level=1)).to_be_visible()

    # The form starts from the loaded model and the newest dataset, and plans as it changes.
    model = main.get_by_label("Model", exact=True)
    expect(model).to_have_value("")
    expect(model.locator("option:checked")).to_have_text("The loaded model (tiny-base)")
    expect(main.get_by_label("Dataset", exact=True)).to_have_value(dataset_id)
    for label, value in FIELDS.items():
        main.get_by_label(label, exact=True).fill(value)
    plan = orchard.post("/training/plan", json={"dataset_id": dataset_id, **REQUEST}, timeout=60).json()
    assert plan["fits"] and plan["total_steps"] == 150, plan
    verdict = main.get_by_role("region", name="Plan")
    expect(verdict.get_by_text("Fits", exact=True)).to_be_visible(timeout=30_000)
    expect(verdict.get_by_text("150", exact=True)).to_be_visible()  # total steps
    # The reason in the server's words (its free-memory figure moves between two asks, so not compared whole).
    expect(
        verdict.get_by_text(re.compile(r"^needs about [\d.]+ GB on \w+ \(\w+ weights, batch 8 of up to \d+ tokens\)"))
    ).to_be_visible()
    expect(verdict.get_by_role("meter", name="Memory the run needs")).to_be_visible()

    with page.expect_response(lambda r: r.request.method == "POST" and r.url == orchard.url + "/training/jobs") as sent:
        main.get_by_role("button", name="Start training").click()
    assert sent.value.status == 202
    assert sent.value.request.post_data_json == {"dataset_id": dataset_id, **REQUEST}
    job_id = sent.value.json()["id"]

    # Followed live: the phase, the progress in steps, and the loss curve once the first points arrive.
    run = main.get_by_role("article", name="Fine-tune tiny-base on codes")
    _wait_for_status(run, orchard, job_id, "Training", "Saving", "Ready")
    curve = run.get_by_role("figure", name="Loss curve of codes-adapter")
    expect(curve.locator("canvas")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(curve).to_contain_text(re.compile(r"train loss \d"), timeout=RUN_TIMEOUT_MS)
    expect(run.get_by_role("progressbar", name="Training progress for codes-adapter")).to_be_visible()

    # Ready: the result, and the base and tuned model's answers side by side.
    _wait_for_status(run, orchard, job_id, "Ready")
    job = orchard.get(f"/jobs/{job_id}").json()
    result, evals = job["result"], [p["eval_loss"] for p in job["history"] if p["eval_loss"] is not None]
    expect(curve).to_contain_text(f"eval loss {_loss(evals[0])} → {_loss(evals[-1])}")
    expect(
        run.get_by_text(f"{_loss(result['first_eval_loss'])} → {_loss(result['eval_loss'])}", exact=True)
    ).to_be_visible()
    assert result["eval_loss"] < result["first_eval_loss"]
    answers = run.get_by_role("list", name="Answers before and after training")
    expect(answers.get_by_role("listitem")).to_have_count(len(result["samples"]))
    for index, sample in enumerate(result["samples"], start=1):
        item = answers.get_by_role("listitem", name=f"Held-out prompt {index}")
        expect(item).to_contain_text(sample["prompt"])
        expect(item.get_by_role("group", name="After (fine-tuned)")).to_contain_text(sample["tuned"].strip())
    assert any(s["tuned"].startswith("The code for") for s in result["samples"])  # it learned the task
    curve.scroll_into_view_if_needed()
    screenshot(page, "training")

    # The adapter, put on the loaded model: chat answers through it, and the current model says so.
    adapters = main.get_by_role("region", name="Adapters")
    row = adapters.get_by_role("listitem", name="codes-adapter")
    row.get_by_role("button", name="Use codes-adapter in chat").click()
    expect(adapters.get_by_role("status").filter(has_text="“codes-adapter” is on tiny-base")).to_be_visible()
    expect(row.get_by_text("In chat", exact=True)).to_be_visible()
    assert orchard.get("/model/current").json()["metadata"]["adapter"] == {"id": job_id, "name": "codes-adapter"}
    expect(page.get_by_role("link", name=re.compile(r"^Current model: tiny-base \+ codes-adapter · "))).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Current model", exact=True).click()
    expect(main.get_by_role("heading", name="tiny-base")).to_be_visible()
    facts = main.get_by_role("definition").filter(has_text="codes-adapter")
    expect(facts).to_contain_text("chat answers through it")
