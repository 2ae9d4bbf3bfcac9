"""The Datasets page against the real backend: a refused upload's located errors, a stored dataset's statistics and
its rows rendered through the loaded model's chat template with the trained spans marked, and a delete."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import FilePayload, Locator, Page, expect

from tests.e2e.support import BrowserErrors, Orchard
from tests.factories import code_task_rows


def _jsonl(name: str, lines: list[str]) -> FilePayload:
    return {"name": name, "mimeType": "application/jsonl", "buffer": ("\n".join(lines) + "\n").encode()}


def _rows(rows: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(row) for row in rows]


def _open_datasets(page: Page) -> Locator:
    """The Datasets page, reached through the navigation (see the reload test below for why not by its address)."""
    page.goto("/models")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Datasets", exact=True).click()
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Datasets", level=1)).to_be_visible()
    return main


def test_a_refused_upload_lists_its_faulty_lines_and_a_good_one_shows_its_rows_with_the_trained_spans(
    page: Page, orchard: Orchard, browser_errors: BrowserErrors
) -> None:
    assert orchard.post("/model/load", json={"model_id": "tiny-llama", "wait": True}, timeout=60).status_code == 200
    browser_errors.expect_failed_request("/datasets", 422)  # the refused upload, on purpose
    main = _open_datasets(page)
    expect(main.get_by_text("No datasets yet")).to_be_visible()

    # A file with an empty assistant reply on line 2 and a line cut short on line 4.
    good = _rows(code_task_rows()[:3])
    empty_reply = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]})
    faulty = _jsonl("faulty.jsonl", [good[0], empty_reply, good[1], good[2][:25]])
    refused = orchard.post("/datasets", files={"file": (faulty["name"], faulty["buffer"])})
    assert refused.status_code == 422  # what the page should list, in the API's own words
    errors = refused.json()["error"]["errors"]
    assert [e["line"] for e in errors] == [2, 4]

    main.get_by_label("Dataset file").set_input_files(faulty)
    main.get_by_role("button", name="Upload", exact=True).click()
    alert = main.get_by_role("alert")
    expect(alert).to_contain_text("The dataset was not stored")
    expect(alert).to_contain_text("invalid_dataset")
    table = main.get_by_role("table", name="Errors in the file")
    for error in errors:
        row = table.get_by_role("row").filter(has=page.get_by_role("cell", name=str(error["line"]), exact=True))
        expect(row).to_contain_text(error["field"] or "—")
        expect(row).to_contain_text(error["message"])
    assert orchard.get("/datasets").json()["datasets"] == []  # nothing was kept

    # A good file is stored, shown at once, with token statistics from the loaded model and a preview.
    main.get_by_label("Dataset file").set_input_files(_jsonl("codes.jsonl", _rows(code_task_rows())))
    expect(table).to_have_count(0)
    main.get_by_label("Name (optional)").fill("codes")
    main.get_by_role("button", name="Upload", exact=True).click()
    expect(main.get_by_role("status").filter(has_text="Uploaded")).to_contain_text("“codes”: 48 examples, all usable.")

    detail = main.get_by_role("region", name="codes", exact=True)
    expect(detail.get_by_text("Chat (messages)")).to_be_visible()
    stats = orchard.get("/datasets/" + orchard.get("/datasets").json()["datasets"][0]["id"]).json()["statistics"]
    histogram = detail.get_by_role("list", name="Token length histogram")
    expect(histogram.get_by_role("listitem")).to_have_count(len(stats["tokens"]["histogram"]))
    expect(detail.get_by_text(f"Every row fits in {stats['tokens']['max_seq_length']} tokens.")).to_be_visible()

    first = detail.get_by_role("listitem", name="Row 1", exact=True)
    trained = first.locator("mark")
    expect(trained).to_have_count(1)
    expect(trained).to_contain_text("The code for apple is elppa.")
    expect(trained).not_to_contain_text("What is the code for apple?")  # the prompt is context, not trained on
    expect(first).to_contain_text("What is the code for apple?")
    expect(detail.get_by_role("list", name="Legend")).to_contain_text("trained on")
    expect(detail.get_by_text(re.compile(r"^Rows 1–5 of 48$"))).to_be_visible()
    detail.get_by_role("button", name="Next rows").click()
    expect(detail.get_by_role("listitem", name="Row 6", exact=True).locator("mark")).to_contain_text("The code for")

    # Delete, after confirming.
    main.get_by_role("button", name="Delete codes", exact=True).click()
    dialog = page.get_by_role("dialog", name="Delete this dataset?")
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(main.get_by_text(re.compile(r"^Deleted; .* freed\.$"))).to_be_visible()
    expect(main.get_by_text("No datasets yet")).to_be_visible()
    assert orchard.get("/datasets").json()["datasets"] == []


def test_without_a_model_the_page_says_what_needs_one(page: Page, orchard: Orchard) -> None:
    rows = "".join(line + "\n" for line in _rows(code_task_rows()[:6]))
    assert orchard.post("/datasets", files={"file": ("six.jsonl", rows)}, data={"name": "six"}).status_code == 201
    main = _open_datasets(page)

    detail = main.get_by_role("region", name="six", exact=True)
    expect(detail.get_by_text("Chat (messages)")).to_be_visible()
    reason = orchard.get("/datasets/" + orchard.get("/datasets").json()["datasets"][0]["id"]).json()["statistics"]
    expect(detail.get_by_text(reason["tokens_reason"])).to_be_visible()
    expect(detail.get_by_text(re.compile("The preview renders rows with the model's chat template"))).to_be_visible()
    expect(detail.locator("mark")).to_have_count(0)  # and no preview was asked for (it would log a 409)


def test_the_datasets_page_opens_at_its_own_address(
    page: Page, orchard: Orchard, browser_errors: BrowserErrors
) -> None:
    """GET /datasets is also the API's list: a browser's page load (Accept: text/html) gets the app."""
    page.goto("/datasets")
    expect(page.get_by_role("heading", name="Datasets", level=1)).to_be_visible(timeout=3_000)
