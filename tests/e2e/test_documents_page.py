"""The Documents page against the real backend: a collection created from the page, three files added by one ingest
job (a Markdown note with a planted fact, an HTML page whose script is not text, a broken PDF reported by its name),
the documents listed, searches that find the fact under its heading and nothing of the script, a retrieval measure,
the embedder changed by a reembed job followed to its end, a document deleted, and a reload that keeps the collection
open."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.e2e.support import BrowserErrors, Orchard, screenshot
from tests.factories import make_embedder

INGEST_TIMEOUT_MS = 120_000  # the first ingest in a process loads the embedding model
EMBEDDER_TIMEOUT_MS = 60_000  # a search or measure waiting for the embedder (loaded by then, but a busy machine)

NOTE = """# Field notes

Weekly notes from the plant, kept for the operators.

## Reactor cooling

The Zorblat-7 reactor is cooled by heavy water. The coolant loop is checked every morning before the shift starts.

## Pump room

The bleed valve is opened before the pump is primed.
"""

# "quillfeather" is only in the script: HTML is read without scripts, so no chunk may hold it.
PAGE = """<!doctype html>
<html><head><title>Visitor guide</title>
<script>var quillfeather = "tracking"; console.log(quillfeather);</script></head>
<body><nav>Home | About</nav>
<h1>Visitor guide</h1>
<p>Visitors sign in at the north gate and wear a badge at all times.</p>
<h2>Parking</h2>
<p>Parking is behind the canteen; the east lot is for deliveries.</p>
</body></html>
"""


def _files(tmp_path: Path) -> list[Path]:
    note = tmp_path / "field-notes.md"
    note.write_text(NOTE, encoding="utf-8")
    html = tmp_path / "visitor-guide.html"
    html.write_text(PAGE, encoding="utf-8")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    return [note, html, broken]


def _search(main: Locator, text: str, mode: str) -> None:
    search = main.get_by_role("search", name="Search Plant")
    search.get_by_label("Search for").fill(text)
    search.get_by_label("Mode").select_option(mode)
    search.get_by_role("button", name="Search", exact=True).click()


def test_a_collection_from_the_page_its_documents_searched_measured_and_deleted(
    page: Page, orchard: Orchard, browser_errors: BrowserErrors, tmp_path: Path
) -> None:
    page.goto("/models")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Documents", exact=True).click()
    expect(page).to_have_url(orchard.url + "/documents")
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Documents", level=1)).to_be_visible()
    expect(main.get_by_text("No collections yet")).to_be_visible()

    # A collection, created and opened (kept in the address).
    main.get_by_label("Collection name").fill("Plant")
    main.get_by_role("button", name="Create collection").click()
    expect(main.get_by_role("button", name="Open Plant")).to_have_attribute("aria-pressed", "true")
    [created] = orchard.get("/rag/collections").json()["collections"]
    expect(page).to_have_url(f"{orchard.url}/documents?c={created['id']}")
    expect(main.get_by_text("No documents in this collection yet")).to_be_visible()

    # Three files in one ingest job, followed to its end.
    main.get_by_label("Documents to add").set_input_files(_files(tmp_path))
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/documents")) as sent:
        main.get_by_role("button", name="Add", exact=True).click()
    assert sent.value.status == 202, sent.value.text()
    started = sent.value.json()
    assert [f["filename"] for f in started["files"]] == ["field-notes.md", "visitor-guide.html", "broken.pdf"]
    card = main.get_by_role("list", name="Ingest jobs").get_by_role("article", name=started["title"])
    # Followed live until it ends (no Cancel once it is not running), then Ready, a failed file notwithstanding.
    expect(card).to_be_visible()
    expect(card.get_by_role("button", name="Cancel ingest of Plant")).to_have_count(0, timeout=INGEST_TIMEOUT_MS)
    job = orchard.get(f"/jobs/{started['id']}").json()
    assert job["status"] == "ready", job
    expect(card.get_by_text("Ready", exact=True)).to_be_visible()
    assert job["result"]["added"] == 2 and job["result"]["failed"] == 1, job
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")

    files = card.get_by_role("list", name=f"Files of {started['title']}")
    by_name = {f["filename"]: f for f in job["files"]}
    for name in ("field-notes.md", "visitor-guide.html"):
        row = files.get_by_role("listitem", name=name)
        expect(row.get_by_text("Added", exact=True)).to_be_visible()
        chunks = by_name[name]["chunks"]
        expect(row).to_contain_text(f"{chunks} chunk" + ("" if chunks == 1 else "s"))
    broken = files.get_by_role("listitem", name="broken.pdf")
    expect(broken.get_by_text("Failed", exact=True)).to_be_visible()
    message = by_name["broken.pdf"]["error"]["message"]
    assert "broken.pdf" in message, message
    expect(broken.get_by_text(message, exact=True)).to_be_visible()

    # The two documents are listed; the broken file is not.
    documents = main.get_by_role("table", name="Documents")
    expect(documents.get_by_role("row")).to_have_count(3)
    expect(documents.get_by_role("cell", name="field-notes.md", exact=True)).to_be_visible()
    expect(documents.get_by_role("cell", name="visitor-guide.html", exact=True)).to_be_visible()
    expect(documents).not_to_contain_text("broken.pdf")
    expect(main.get_by_role("region", name="Plant", exact=True)).to_contain_text("384 dims")

    # The planted fact, found first, under its heading.
    _search(main, "Zorblat-7", "hybrid")
    answer = orchard.post(
        f"/rag/collections/{created['id']}/query", json={"query": "Zorblat-7", "mode": "hybrid", "top_k": 5}
    ).json()
    top = answer["hits"][0]
    assert top["filename"] == "field-notes.md" and top["heading"], top
    results = main.get_by_role("list", name="Search results")
    first = results.get_by_role("listitem", name="Result 1", exact=True)
    expect(first).to_contain_text("field-notes.md", timeout=EMBEDDER_TIMEOUT_MS)
    expect(first.get_by_text(top["heading"], exact=True)).to_be_visible()
    expect(first).to_contain_text("The Zorblat-7 reactor is cooled by heavy water.")
    expect(first).to_contain_text(f"score {top['score']:#.3g}")  # as JavaScript's toPrecision(3) writes it
    expect(results.get_by_role("listitem")).to_have_count(len(answer["hits"]))
    main.get_by_role("region", name="Documents", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
    screenshot(page, "documents")

    # The script's word is in no passage: a keyword search finds nothing.
    _search(main, "quillfeather", "keyword")
    expect(main.get_by_text("No matching passages")).to_be_visible(timeout=EMBEDDER_TIMEOUT_MS)
    expect(results).to_have_count(0)

    # Retrieval, measured for the search's mode and top k (keyword, 5).
    main.get_by_role("button", name="Measure retrieval").click()
    measure = main.get_by_role("group", name="Retrieval measure")
    expect(measure).to_be_visible(timeout=EMBEDDER_TIMEOUT_MS)
    measured = orchard.post(f"/rag/collections/{created['id']}/eval", json={"mode": "keyword", "top_k": 5}).json()
    expect(measure.get_by_text("Recall@5", exact=True)).to_be_visible()
    expect(measure).to_contain_text(f"{measured['recall_at_k'] * 100:.1f}%")
    expect(measure).to_contain_text(f"{measured['mrr']:.3f}")
    expect(measure).to_contain_text(f"{measured['questions']} generated")

    # A new embedder: every chunk embedded again by a reembed job, followed live, and the collection switched to it.
    tiny = str(make_embedder(tmp_path / "tiny-embedder", dim=32))
    region = main.get_by_role("region", name="Plant", exact=True)
    region.get_by_label("New embedder").fill(tiny)
    with page.expect_response(lambda r: r.request.method == "PATCH") as changed:
        region.get_by_role("button", name="Re-embed").click()
    assert changed.value.status == 202, changed.value.text()
    reembed = changed.value.json()["job"]
    card = region.get_by_role("list", name="Re-embedding jobs").get_by_role("article", name=reembed["title"])
    expect(card.get_by_text("Ready", exact=True)).to_be_visible(timeout=INGEST_TIMEOUT_MS)
    assert orchard.get(f"/jobs/{reembed['id']}").json()["status"] == "ready"
    expect(region).to_contain_text(f"{tiny} (32 dims)")
    expect(region.get_by_label("New embedder")).to_have_value("")
    # The same embedder again is refused with the server's reason, shown on the form.
    browser_errors.expect_failed_request(f"/rag/collections/{created['id']}", 400)
    region.get_by_label("New embedder").fill(tiny)
    region.get_by_role("button", name="Re-embed").click()
    expect(region.get_by_text("Could not change the embedder")).to_be_visible()
    expect(region).to_contain_text("The collection is already embedded with")
    _search(main, "Zorblat-7", "keyword")
    expect(results.get_by_role("listitem", name="Result 1", exact=True)).to_contain_text(
        "field-notes.md", timeout=EMBEDDER_TIMEOUT_MS
    )

    # The HTML document, deleted after confirming.
    main.get_by_role("button", name="Delete document visitor-guide.html").click()
    dialog = page.get_by_role("dialog", name="Delete this document?")
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(main.get_by_text(re.compile(r"^Deleted visitor-guide\.html: \d+ chunks? removed\.$"))).to_be_visible()
    expect(documents.get_by_role("row")).to_have_count(2)
    expect(documents).not_to_contain_text("visitor-guide.html")
    listed = orchard.get(f"/rag/collections/{created['id']}/documents").json()["documents"]
    assert [d["filename"] for d in listed] == ["field-notes.md"]

    # A reload keeps the collection open, with its recent ingest job.
    page.reload()
    expect(main.get_by_role("button", name="Open Plant")).to_have_attribute("aria-pressed", "true")
    expect(main.get_by_role("list", name="Ingest jobs").get_by_role("article", name=started["title"])).to_be_visible()
    expect(main.get_by_role("table", name="Documents").get_by_role("row")).to_have_count(2)
