"""The Chat page against the real backend: replies stream in, Stop ends one (and the generation on the server),
conversations survive a reload and export as JSON; without a model the page says how to load one.

The tiny models write random text: these tests check the mechanics, never the words.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Orchard
from tests.e2e.support import PHONE_VIEWPORT, screenshot
from tests.factories import make_model


@pytest.fixture(scope="module")
def long_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama with a 4096-token context. The 256-token one writes its longest reply in well under a second on
    a fast machine, too quickly to press Stop in the middle; greedy decoding makes this one run to thousands."""
    return make_model(tmp_path_factory.mktemp("long-llama") / "tiny-llama-4k", "llama", context_length=4096)


def load(orchard: Orchard, model_path: str) -> None:
    response = httpx.post(
        orchard.url + "/model/upload", params={"model_path": model_path}, timeout=120, trust_env=False
    )
    assert response.status_code == 200, response.text


def send(page: Page, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_role("button", name="Send", exact=True).click()


def set_param(page: Page, label: str, value: str) -> None:
    page.get_by_label(label, exact=True).fill(value)


def text_length(message: Locator) -> int:
    return len(message.inner_text())


def test_chat_streams_stops_and_keeps_the_conversation(page: Page, orchard: Orchard, long_llama: Path) -> None:
    load(orchard, str(long_llama))
    main = page.get_by_role("main")
    page.goto("/chat")
    expect(main.get_by_role("heading", name="Chat", level=1)).to_be_visible()
    expect(main.get_by_text("tiny-llama-4k", exact=True)).to_be_visible()
    assistant = main.locator('[data-role="assistant"]')
    user = main.locator('[data-role="user"]')

    # A short greedy reply: it streams in and ends with its speed.
    set_param(page, "Temperature", "0")
    set_param(page, "Max new tokens", "48")
    page.get_by_label("System prompt", exact=True).fill("You are a test.")
    send(page, "Hello, model")
    expect(user.nth(0)).to_have_text("Hello, model")
    expect(assistant.nth(0).get_by_text("tok/s")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    expect(main.get_by_role("heading", name="Hello, model", level=2)).to_be_visible()

    # A long one: it grows while it streams; Stop ends it and keeps what came.
    set_param(page, "Max new tokens", "4000")
    page.get_by_label("Message", exact=True).fill("Tell me a very long story")
    page.get_by_label("Message", exact=True).press("Enter")
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible()
    reply = assistant.nth(1)
    expect(reply).to_have_attribute("aria-busy", "true")
    page.wait_for_function("el => el.innerText.length > 20", arg=reply.element_handle())
    seen = text_length(reply)
    page.wait_for_function(f"el => el.innerText.length > {seen}", arg=reply.element_handle())
    stop.click()
    expect(stop).to_have_count(0)
    expect(reply.get_by_text("Stopped", exact=True)).to_be_visible()
    expect(reply).not_to_have_attribute("aria-busy", "true")
    kept = reply.inner_text()
    assert len(kept) > seen
    page.wait_for_timeout(300)
    assert reply.inner_text() == kept  # nothing more arrives after Stop

    # The server is free again: it answers, and the next reply is not stuck behind the stopped one (thousands
    # of tokens long had it gone on).
    assert orchard.get("/model/current").json()["loaded"] is True
    set_param(page, "Max new tokens", "8")
    send(page, "Still there?")
    expect(assistant.nth(2).get_by_text("tok/s")).to_be_visible()

    # A reload brings the conversation back, the stopped reply still marked.
    page.reload()
    expect(user).to_have_count(3)
    expect(assistant).to_have_count(3)
    expect(assistant.nth(1).get_by_text("Stopped", exact=True)).to_be_visible()
    expect(page.get_by_label("System prompt", exact=True)).to_have_value("You are a test.")
    expect(page.get_by_label("Max new tokens", exact=True)).to_have_value("8")
    screenshot(page, "chat")

    # Export: the messages in OpenAI's shape, with the model and parameters.
    with page.expect_download() as download_info:
        main.get_by_role("button", name="Export JSON", exact=True).click()
    download = download_info.value
    assert download.suggested_filename.startswith("orchard-chat-hello-model-")
    exported = json.loads(Path(download.path()).read_text())
    [conversation] = exported["conversations"]
    assert [m["role"] for m in conversation["messages"]] == ["system"] + ["user", "assistant"] * 3
    assert conversation["messages"][0] == {"role": "system", "content": "You are a test."}
    assert conversation["messages"][1] == {"role": "user", "content": "Hello, model"}
    assert all(set(m) == {"role", "content"} for m in conversation["messages"])
    assert conversation["model"] == "tiny-llama-4k"
    assert conversation["parameters"]["max_new_tokens"] == 8
    assert conversation["parameters"]["temperature"] == 0

    # On a phone the parameters fold away behind a toggle, and nothing is wider than the screen.
    page.set_viewport_size(PHONE_VIEWPORT)
    temperature = page.get_by_label("Temperature", exact=True)
    expect(temperature).to_be_hidden()
    parameters = main.get_by_role("region", name="Parameters")
    parameters.get_by_role("button", name="Show").click()
    expect(temperature).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_VIEWPORT["width"]


def test_chat_without_a_model_says_so_and_links_to_the_models_page(page: Page, orchard: Orchard) -> None:
    assert orchard.get("/model/current").json()["loaded"] is False
    main = page.get_by_role("main")
    page.goto("/chat")

    expect(main.get_by_text("No model loaded", exact=True)).to_be_visible()
    expect(main.get_by_label("Message", exact=True)).to_have_count(0)
    expect(main.get_by_role("button", name="Send")).to_have_count(0)
    main.get_by_role("link", name="Load a model on the Models page").click()
    expect(page).to_have_url(f"{orchard.url}/models")
    expect(main.get_by_role("heading", name="Models", level=1)).to_be_visible()


def test_a_reply_from_a_document_collection_shows_its_sources(page: Page, orchard: Orchard, long_llama: Path) -> None:
    load(orchard, str(long_llama))
    created = orchard.post("/rag/collections", json={"name": "Manuals"}).json()
    note = b"# Priming\n\nOpen the bleed valve of the Zorblat-7 pump and wait for water.\n"
    added = orchard.post(
        f"/rag/collections/{created['id']}/documents?wait=true", files=[("files", ("pump.md", note))], timeout=120
    )
    assert added.status_code == 200 and added.json()["result"]["added"] == 1, added.text
    main = page.get_by_role("main")
    page.goto("/chat")
    picker = main.get_by_label("Answer from documents", exact=True)
    expect(picker.locator("option", has_text="Manuals (1 document)")).to_have_count(1)
    picker.select_option(label="Manuals (1 document)")
    set_param(page, "Temperature", "0")
    set_param(page, "Max new tokens", "8")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/chat")) as sent:
        send(page, "How do I prime the Zorblat-7 pump?")
    assert sent.value.post_data_json["collection_id"] == created["id"]
    sources = main.get_by_role("region", name="Sources")
    expect(sources).to_be_visible(timeout=60_000)
    item = sources.get_by_text("[1] pump.md · Priming", exact=True)
    expect(item).to_be_visible()
    item.click()
    expect(sources.get_by_text("Open the bleed valve of the Zorblat-7 pump", exact=False)).to_be_visible()
    page.reload()  # the sources are kept with the conversation
    expect(main.get_by_role("region", name="Sources")).to_be_visible()
    expect(main.get_by_label("Answer from documents", exact=True)).to_have_value(created["id"])
