"""The web app against a server with an API key (ORCHARD_API_KEY): it asks for the key, says when it is wrong, sends
it with every request once saved (mutations too), keeps it across a reload, and never shows it."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, Request, expect
from pydantic import SecretStr

from tests.e2e.support import BrowserErrors, Orchard

KEY = "orchard-e2e-key-3b9d71f0"
# What the Models page and the app shell ask for before the key is known: each is refused with a 401 (which
# Chromium logs as a console error) while there is no key, and again after the wrong one.
REFUSED_PATHS = ("/model/current", "/model/local-models", "/jobs", "/config")


def _api_requests(page: Page) -> list[Request]:
    requests: list[Request] = []

    def keep(request: Request) -> None:
        if request.resource_type in ("fetch", "xhr", "eventsource"):
            requests.append(request)

    page.on("request", keep)
    return requests


def _assert_key_not_shown(page: Page) -> None:
    assert KEY not in page.locator("body").inner_text()
    assert KEY not in (page.locator("body").text_content() or "")
    assert KEY not in page.content()  # nor in an attribute (a value, a title)


@pytest.mark.parametrize("settings_overrides", [{"api_key": SecretStr(KEY)}])
def test_the_app_asks_for_the_key_then_sends_it_everywhere(
    page: Page, orchard: Orchard, browser_errors: BrowserErrors
) -> None:
    assert orchard.get("/model/current").status_code == 401  # the server really wants the key
    for path in REFUSED_PATHS:
        browser_errors.expect_failed_request(path, 401)
    requests = _api_requests(page)

    page.goto("/models")
    main = page.get_by_role("main")
    prompt = main.get_by_role("region", name="API key needed")
    expect(prompt).to_be_visible()
    expect(prompt.get_by_role("alert")).to_contain_text("This Orchard needs its API key")
    field = prompt.get_by_label("API key", exact=True)
    expect(field).to_have_attribute("type", "password")
    expect(field).to_be_focused()
    expect(main.get_by_role("region", name="API key needed")).to_have_count(1)  # one prompt for the whole app

    field.fill("not-the-key")
    field.press("Enter")  # the keyboard is enough
    expect(prompt.get_by_role("alert")).to_have_text("Wrong API key.")
    expect(field).to_have_value("")

    field.fill(KEY)
    prompt.get_by_role("button", name="Save").click()
    expect(main.get_by_role("region", name="API key needed")).to_have_count(0)
    local = main.get_by_role("region", name="Local models")
    expect(local.get_by_text("tiny-llama", exact=True)).to_be_visible()
    _assert_key_not_shown(page)

    # A mutation, with the header: load tiny-llama from the list (a load job, followed by polling since
    # EventSource cannot send the key); the app shell follows the backend.
    already = len(requests)
    local.get_by_role("button", name="Load tiny-llama", exact=True).click()
    expect(page.get_by_role("link", name=re.compile(r"^Current model: tiny-llama · "))).to_be_visible(timeout=30_000)
    current = httpx.get(
        orchard.url + "/model/current", headers={"Authorization": f"Bearer {KEY}"}, timeout=10, trust_env=False
    ).json()
    assert current["metadata"]["model_id"] == "tiny-llama"
    loads = [r for r in requests[already:] if r.method == "POST" and r.url.startswith(orchard.url + "/model/load")]
    assert loads and all(r.headers.get("authorization") == f"Bearer {KEY}" for r in loads)
    after_save = [r for r in requests[already:] if r.url.startswith(orchard.url)]
    assert after_save and all(r.headers.get("authorization") == f"Bearer {KEY}" for r in after_save)
    assert not [r for r in after_save if r.resource_type == "eventsource"]  # EventSource cannot send the key

    # The key is kept in this browser: a reload works without asking again.
    page.reload()
    expect(local.get_by_role("button", name="Load tiny-llama", exact=True)).to_be_disabled()  # loaded
    expect(page.get_by_role("link", name=re.compile(r"^Current model: tiny-llama · "))).to_be_visible()
    expect(main.get_by_role("region", name="API key needed")).to_have_count(0)

    # The System page says a key is saved, without showing it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="System", exact=True).click()
    saved = main.get_by_role("region", name="API key", exact=True)
    expect(saved).to_contain_text("An API key is saved in this browser")
    expect(saved.get_by_role("button", name="Forget key")).to_be_visible()
    _assert_key_not_shown(page)
