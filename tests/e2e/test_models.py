"""The Models and Current model pages against the real backend: load, unload, download, upload, delete, errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.support import PHONE_VIEWPORT, BrowserErrors, Orchard, screenshot

REPO = "orchard-test/small-llama"
DOWNLOAD_TIMEOUT_MS = 60_000

# The progress bar's value, read in the page; resolves once it is above `floor` (and below 100 when `partial`).
_PROGRESS_ABOVE = """({label, floor, partial}) => {
  const bars = [...document.querySelectorAll('[role="progressbar"]')];
  const bar = bars.find((el) => el.getAttribute("aria-label") === label);
  if (!bar || !bar.hasAttribute("aria-valuenow")) return false;
  const value = Number(bar.getAttribute("aria-valuenow"));
  return value > floor && (!partial || value < 100) ? value : false;
}"""


def _js_escape(text: str) -> str:
    """``re.escape`` for a pattern Playwright hands to JavaScript, where an unescaped ``/`` ends the regex."""
    return re.escape(text).replace("/", r"\/")


def _main(page: Page) -> Locator:
    return page.get_by_role("main")


def _nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()
    expect(_main(page).get_by_role("heading", name=name, level=1)).to_be_visible()


def _look_up(page: Page, model_id: str) -> None:
    page.get_by_label("Hugging Face model id").fill(model_id)
    page.get_by_role("button", name="Look up").click()


def _progress_above(page: Page, model_id: str, floor: float, *, partial: bool) -> float:
    """Wait until the job's progress bar shows more than ``floor`` percent; returns the value shown."""
    handle = page.wait_for_function(
        _PROGRESS_ABOVE,
        arg={"label": f"Download progress for {model_id}", "floor": floor, "partial": partial},
        timeout=DOWNLOAD_TIMEOUT_MS,
    )
    return float(handle.json_value())


def _serve_small_llama(orchard: Orchard, small_llama: Path, bytes_per_s: int) -> int:
    """Publish the few-MB model on the test Hub, throttled; returns its weights' size in bytes."""
    orchard.hub.add_repo(REPO, small_llama)
    orchard.hub.throttle_bytes_per_s = bytes_per_s
    return (small_llama / "model.safetensors").stat().st_size


# Records every progress bar with this label as the page draws it: where it was (the card's title) and its value.
_WATCH_BARS = """(label) => {
  window.__bars = [];
  const record = () => {
    for (const bar of document.querySelectorAll('[role="progressbar"]')) {
      if (bar.getAttribute("aria-label") !== label) continue;
      const card = bar.closest("section")?.querySelector("h2")?.textContent ?? null;
      window.__bars.push({ card, value: bar.getAttribute("aria-valuenow") });
    }
  };
  new MutationObserver(record).observe(document.body, { subtree: true, childList: true, attributes: true });
}"""


def _loaded_notice(orchard: Orchard) -> str:
    """What Local models says once a load job is ready, from the API's own account of the model."""
    meta = orchard.get("/model/current").json()["metadata"]
    return f"Loaded on {meta['device']} as {meta['dtype']} in "


def test_load_a_local_model_see_it_as_current_then_unload_it(page: Page, orchard: Orchard) -> None:
    page.goto("/models")
    main = _main(page)
    expect(main.get_by_role("heading", name="Models", level=1)).to_be_visible()
    local = main.get_by_role("region", name="Local models")
    expect(local).to_be_visible()
    expect(main.get_by_text("tiny-gpt2", exact=True)).to_be_visible()
    expect(main.get_by_text("tiny-llama", exact=True)).to_be_visible()

    # Load starts a load job (POST /model/load), which the page follows until the model is loaded.
    with page.expect_response(lambda r: r.request.method == "POST" and r.url == orchard.url + "/model/load") as posted:
        local.get_by_role("button", name="Load tiny-llama", exact=True).click()
    assert posted.value.status == 202
    assert posted.value.request.post_data_json == {"model_id": "tiny-llama"}
    job = posted.value.json()
    assert (job["kind"], job["model_id"]) == ("load", "tiny-llama")
    # The app shell's status link follows the backend: it names the model once the load has finished.
    expect(page.get_by_role("link", name=re.compile(r"^Current model: tiny-llama · "))).to_be_visible(timeout=30_000)
    assert orchard.get(f"/jobs/{job['id']}").json()["status"] == "ready"
    assert orchard.get("/model/current").json()["metadata"]["model_id"] == "tiny-llama"
    expect(local.get_by_role("status")).to_contain_text(_loaded_notice(orchard))
    expect(local.get_by_role("button", name="Load tiny-llama", exact=True)).to_be_disabled()  # it is loaded

    _nav(page, "Current model")
    expect(main.get_by_text("tiny-llama", exact=True)).to_be_visible()
    expect(main.get_by_text("No model loaded")).to_have_count(0)
    screenshot(page, "current-model")

    main.get_by_role("button", name="Unload", exact=True).click()
    expect(main.get_by_text("No model loaded")).to_be_visible()
    expect(page.get_by_role("link", name="Current model: No model loaded")).to_be_visible()
    assert orchard.get("/model/current").json()["loaded"] is False


def test_a_load_shows_its_progress_is_listed_as_a_job_and_clear_finished_empties_the_list(
    page: Page, orchard: Orchard
) -> None:
    model = "tiny-gpt2"
    label = f"Load progress for {model}"
    page.goto("/models")
    main = _main(page)
    local = main.get_by_role("region", name="Local models")
    expect(local.get_by_role("button", name=f"Load {model}", exact=True)).to_be_enabled()
    expect(main.get_by_role("region", name="Jobs")).to_have_count(0)  # no job yet
    page.evaluate(_WATCH_BARS, label)

    local.get_by_role("button", name=f"Load {model}", exact=True).click()

    # The Jobs card lists the load; its bar reaches the end and it says where the model went.
    jobs = main.get_by_role("region", name="Jobs")
    card = jobs.get_by_role("article", name=f"Load {model}")
    expect(card).to_be_visible()
    bar = card.get_by_role("progressbar", name=label)
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=30_000)
    expect(card.get_by_text("Ready", exact=True)).to_be_visible()
    job = orchard.get("/jobs").json()["jobs"][0]
    assert (job["kind"], job["title"], job["status"]) == ("load", f"Load {model}", "ready")
    progress = job["progress"]
    assert progress["unit"] == "tensors" and 0 < progress["completed"] == progress["total"]
    meta = job["result"]
    expect(card).to_contain_text(f"Loaded on {meta['device']} as {meta['dtype']}.")
    expect(card).to_contain_text(f"{progress['total']:,} of {progress['total']:,} tensors")
    expect(card.get_by_role("button")).to_have_count(0)  # neither Cancel nor Resume once ready

    # Under the model itself, the bar showed while the load ran (with its Cancel), then gave way to the notice.
    seen = page.evaluate("window.__bars")
    assert any(entry["card"] == "Local models" for entry in seen), seen
    for where in ("Local models", "Jobs"):  # each bar only went forwards
        values = [int(entry["value"]) for entry in seen if entry["card"] == where and entry["value"] is not None]
        assert values == sorted(values), (where, values)
    expect(local.get_by_role("status")).to_contain_text(_loaded_notice(orchard))
    expect(local.get_by_role("progressbar")).to_have_count(0)
    expect(local.get_by_role("button", name=f"Load {model}", exact=True)).to_be_disabled()
    expect(page.get_by_role("link", name=re.compile(rf"^Current model: {model} · "))).to_be_visible()

    # Clear finished empties the history, on the server too, so a reload shows no job.
    jobs.get_by_role("button", name="Clear finished", exact=True).click()
    expect(main.get_by_role("region", name="Jobs")).to_have_count(0)
    assert orchard.get("/jobs").json()["jobs"] == []
    page.reload()
    expect(local.get_by_role("button", name=f"Load {model}", exact=True)).to_be_disabled()  # still loaded
    expect(main.get_by_role("region", name="Jobs")).to_have_count(0)


def test_download_shows_live_progress_until_ready_and_loads_the_model(
    page: Page, orchard: Orchard, small_llama: Path
) -> None:
    weights = _serve_small_llama(orchard, small_llama, bytes_per_s=2_000_000)  # a few seconds of download
    page.goto("/models")
    main = _main(page)

    _look_up(page, REPO)
    expect(main.get_by_role("heading", name=REPO)).to_be_visible()
    expect(main.get_by_text("Fits", exact=True)).to_be_visible()
    expect(page.get_by_label("Load when downloaded")).to_be_checked()
    page.get_by_role("button", name="Download", exact=True).click()

    bar = page.get_by_role("progressbar", name=f"Download progress for {REPO}")
    expect(bar).to_be_visible()
    first = _progress_above(page, REPO, 0, partial=True)
    expect(main.get_by_text("Downloading", exact=True)).to_be_visible()  # the phase
    expect(main.get_by_text(re.compile(r"\d(\.\d+)? (B|kB|MB) of \d+(\.\d+)? MB"))).to_be_visible()  # bytes so far
    expect(page.get_by_role("button", name=f"Cancel download of {REPO}")).to_be_visible()
    later = _progress_above(page, REPO, first, partial=False)
    assert later > first

    expect(main.get_by_text("Ready", exact=True)).to_be_visible(timeout=DOWNLOAD_TIMEOUT_MS)
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_role("button", name=f"Cancel download of {REPO}")).to_have_count(0)
    expect(main.get_by_role("button", name=f"Delete {REPO}", exact=True)).to_be_visible()  # in Local models
    expect(page.get_by_role("link", name=re.compile(rf"^Current model: {_js_escape(REPO)} · "))).to_be_visible()
    served = [r for r in orchard.hub.requests if r.method == "GET" and r.path.endswith("/model.safetensors")]
    assert sum(r.body_bytes for r in served) == weights  # the weights came from the Hub, once

    page.reload()  # for the README: the finished download and the local models, without the lookup's details
    expect(main.get_by_text("Ready", exact=True)).to_be_visible()
    expect(main.get_by_role("button", name=f"Delete {REPO}", exact=True)).to_be_visible()
    screenshot(page, "models")
    page.set_viewport_size(PHONE_VIEWPORT)
    expect(main.get_by_role("heading", name="Models", level=1)).to_be_in_viewport()
    screenshot(page, "models-phone")


def test_progress_continues_after_a_reload_and_after_cancel_then_resume(
    page: Page, orchard: Orchard, small_llama: Path
) -> None:
    weights = _serve_small_llama(orchard, small_llama, bytes_per_s=1_000_000)
    page.goto("/models")
    main = _main(page)
    _look_up(page, REPO)
    expect(main.get_by_role("heading", name=REPO)).to_be_visible()
    # The download check answers after the info and adds its rows above the checkbox: wait for them, so the
    # click does not land where the checkbox was a moment before.
    expect(main.get_by_text("Free disk", exact=True)).to_be_visible()
    page.get_by_label("Load when downloaded").uncheck()
    page.get_by_role("button", name="Download", exact=True).click()
    before = _progress_above(page, REPO, 0, partial=True)

    page.reload()

    # The page has no memory of the job: what it shows now comes from the jobs API.
    expect(page.get_by_role("progressbar", name=f"Download progress for {REPO}")).to_be_visible()
    after = _progress_above(page, REPO, before - 1, partial=True)  # where it was, or further
    _progress_above(page, REPO, after, partial=True)  # and still moving

    page.get_by_role("button", name=f"Cancel download of {REPO}").click()
    expect(main.get_by_text("Cancelled", exact=True)).to_be_visible()
    stopped = orchard.get("/model/jobs").json()["jobs"][0]["progress"]["percent"]
    assert 0 < stopped < 100
    page.get_by_role("button", name=f"Resume download of {REPO}").click()
    _progress_above(page, REPO, round(stopped), partial=False)  # it goes on from there
    expect(main.get_by_text("Ready", exact=True)).to_be_visible(timeout=DOWNLOAD_TIMEOUT_MS)

    expect(main.get_by_role("button", name=f"Load {REPO}", exact=True)).to_be_visible()  # in Local models
    assert orchard.get("/model/current").json()["loaded"] is False  # "Load when downloaded" was off
    jobs = orchard.get("/model/jobs").json()["jobs"]
    assert [(j["model_id"], j["status"]) for j in jobs] == [(REPO, "ready")]  # one job throughout
    served = [r for r in orchard.hub.requests if r.method == "GET" and r.path.endswith("/model.safetensors")]
    assert served[-1].range is not None and served[-1].range.startswith("bytes=")  # resumed, not restarted
    assert weights <= sum(r.body_bytes for r in served) < 1.5 * weights


@pytest.mark.parametrize("settings_overrides", [{"disk_quota_gb": 0.002}])
def test_a_download_that_does_not_fit_fails_with_the_api_message(
    page: Page, orchard: Orchard, small_llama: Path
) -> None:
    _serve_small_llama(orchard, small_llama, bytes_per_s=1_000_000)
    check = orchard.get(f"/model/check/{REPO}").json()
    assert check["fits_disk"] is False
    page.goto("/models")
    main = _main(page)

    _look_up(page, REPO)
    expect(main.get_by_text("Does not fit", exact=True)).to_be_visible()
    expect(main).to_contain_text(check["disk_reason"])
    page.get_by_role("button", name="Download", exact=True).click()

    expect(main.get_by_text("Failed", exact=True)).to_be_visible()
    error = orchard.get("/model/jobs").json()["jobs"][0]["error"]
    assert error["code"] == "insufficient_disk"
    expect(page.get_by_role("alert")).to_contain_text(error["message"])
    expect(page.get_by_role("button", name=f"Resume download of {REPO}")).to_be_visible()
    assert not [r for r in orchard.hub.requests if r.path.endswith("/model.safetensors") and r.method == "GET"]


def test_looking_up_a_missing_model_shows_the_api_message(
    page: Page, orchard: Orchard, browser_errors: BrowserErrors
) -> None:
    missing = "orchard-test/does-not-exist"
    answer = orchard.get(f"/model/info/{missing}")
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    browser_errors.expect_failed_request(f"/{missing}", 404)  # the lookup itself, logged by Chromium
    page.goto("/models")

    _look_up(page, missing)

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(message)
    expect(_main(page).get_by_role("heading", name=missing)).to_have_count(0)
    expect(_main(page).get_by_text(re.compile(r"^(Fits|Does not fit)$"))).to_have_count(0)


def test_upload_a_model_folder_then_delete_it(page: Page, orchard: Orchard, tmp_path: Path) -> None:
    folder = shutil.copytree(orchard.settings.models_path / "tiny-gpt2", tmp_path / "upload" / "uploaded-gpt2")
    page.goto("/models")
    main = _main(page)

    page.get_by_label("Model folder").set_input_files(folder)
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(main.get_by_text("uploaded-gpt2", exact=True)).to_be_visible(timeout=30_000)
    stored = orchard.settings.models_path / "uploaded-gpt2"
    assert sorted(p.name for p in stored.iterdir()) == sorted(p.name for p in folder.iterdir())

    main.get_by_role("button", name="Delete uploaded-gpt2", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    expect(dialog).to_have_count(0)
    assert stored.is_dir()

    main.get_by_role("button", name="Delete uploaded-gpt2", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    expect(main.get_by_role("button", name="Delete uploaded-gpt2", exact=True)).to_have_count(0)
    expect(main.get_by_text("tiny-gpt2", exact=True)).to_be_visible()
    assert not stored.exists()
