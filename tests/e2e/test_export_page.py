"""The Export page against the real backend: the loaded model's verdict and types, a real GGUF export job followed to
Ready (its file read back by llama.cpp, or transformers where llama.cpp is not installed), the finished export with
its check figures, its download link and its Modelfile."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.support import Orchard, screenshot
from tests.factories import make_model, pretrain

RUN_TIMEOUT_MS = 120_000  # the export process start (~10-15 s of imports) on a busy 2-core machine


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama trained on a few sentences: confident predictions, as a real model's, for the 8-bit check."""
    return pretrain(make_model(tmp_path_factory.mktemp("e2e-export") / "tiny-base", "llama"), steps=100)


@pytest.fixture
def local_models(local_models: Path, tiny_base: Path) -> Path:
    shutil.copytree(tiny_base, local_models / "tiny-base")
    return local_models


def test_export_the_loaded_model_from_the_page_and_get_its_checked_file(page: Page, orchard: Orchard) -> None:
    assert orchard.post("/model/load", json={"model_id": "tiny-base", "wait": True}, timeout=60).status_code == 200
    page.goto("/models")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Export", exact=True).click()
    expect(page).to_have_url(orchard.url + "/export")
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Export", level=1)).to_be_visible()

    # The loaded model by default, with the server's verdict and every type's size and check.
    model = main.get_by_label("Model", exact=True)
    expect(model).to_have_value("")
    expect(model.locator("option:checked")).to_have_text("The loaded model (tiny-base)")
    options = orchard.get("/export/gguf/options").json()
    assert options["supported"], options
    verdict = main.get_by_role("group", name="Export verdict")
    expect(verdict.get_by_text("Can be exported", exact=True)).to_be_visible(timeout=30_000)
    expect(verdict.get_by_text(options["architecture"], exact=True)).to_be_visible()
    types = main.get_by_role("table", name="Weight types")
    expect(types.get_by_role("row")).to_have_count(len(options["quantizations"]) + 1)
    weight_type = main.get_by_label("Weight type", exact=True)
    for q in options["quantizations"]:
        option = weight_type.locator(f'option[value="{q["name"]}"]')
        expect(option).to_contain_text(q["name"])
        if q["available"]:
            expect(option).to_be_enabled()
        else:  # a K-quant without llama.cpp's quantizer: shown, not choosable, and why
            expect(option).to_be_disabled()
            expect(option).to_contain_text("not available here")
            expect(types.get_by_role("row").filter(has_text=q["name"])).to_have_attribute("title", q["reason"])
    weight_type.select_option("q8_0")
    expect(weight_type).to_have_value("q8_0")
    q8 = next(q for q in options["quantizations"] if q["name"] == "q8_0")
    expect(main.get_by_text(f"Must pass: {q8['check']}.", exact=True)).to_be_visible()

    with page.expect_response(lambda r: r.request.method == "POST" and r.url == orchard.url + "/export/gguf") as sent:
        main.get_by_role("button", name="Start export").click()
    assert sent.value.status == 202
    assert sent.value.request.post_data_json == {"quantization": "q8_0"}
    job_id = sent.value.json()["id"]

    # The job, followed live to Ready (or failing the test at once with the server's error).
    card = main.get_by_role("region", name="Export jobs").get_by_role("article", name="Export tiny-base to GGUF (q8_0)")
    expect(card.get_by_role("progressbar", name="Export progress for tiny-base-q8_0")).to_be_visible()
    badge = card.get_by_text(re.compile("^(Ready|Failed|Cancelled|Interrupted)$"))
    expect(badge).to_be_visible(timeout=RUN_TIMEOUT_MS)
    assert badge.inner_text() == "Ready", orchard.get(f"/jobs/{job_id}").json().get("error")
    expect(card.get_by_role("progressbar", name="Export progress for tiny-base-q8_0")).to_have_attribute(
        "aria-valuenow", "100"
    )
    result = orchard.get(f"/jobs/{job_id}").json()["result"]
    check = result["check"]
    assert check["passed"], check

    # The finished export: its figures as the server measured them, the file, and its Modelfile.
    row = main.get_by_role("region", name="Exports").get_by_role("listitem", name="tiny-base-q8_0")
    expect(row.get_by_text("tiny-base-q8_0.gguf", exact=True)).to_be_visible(timeout=15_000)
    expect(row.get_by_text(result["sha256"][:12] + "…", exact=True)).to_have_attribute("title", result["sha256"])
    figures = row.get_by_role("group", name="Check of tiny-base-q8_0")
    expect(figures.get_by_text("Passed", exact=True)).to_be_visible()
    expect(figures.get_by_text(check["engine"], exact=True)).to_be_visible()
    expect(figures.get_by_text(f"matches (same ids on {check['probes']} probes)", exact=True)).to_be_visible()
    expect(
        figures.get_by_text(f"{check['top1_agreement'] * 100:.1f}% of {check['positions']} positions")
    ).to_be_visible()
    expect(figures.get_by_text(check["bound"], exact=True)).to_be_visible()

    link = row.get_by_role("link", name="Download tiny-base-q8_0.gguf")
    expect(link).to_have_attribute("href", f"/exports/{job_id}/file")
    expect(link).to_have_attribute("download", "tiny-base-q8_0.gguf")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "tiny-base-q8_0.gguf"
    saved = Path(download.value.path())
    assert saved.stat().st_size == result["size_bytes"]
    assert saved.read_bytes()[:4] == b"GGUF"

    row.get_by_role("button", name="Modelfile of tiny-base-q8_0").click()
    modelfile = row.get_by_label("Modelfile for tiny-base-q8_0")
    expect(modelfile).to_have_text(result["modelfile"].rstrip("\n"))
    expect(modelfile).to_contain_text("FROM ./tiny-base-q8_0.gguf")
    expect(row.get_by_text("ollama create tiny-base-q8_0 -f Modelfile", exact=True)).to_be_visible()
    row.scroll_into_view_if_needed()
    screenshot(page, "export")
