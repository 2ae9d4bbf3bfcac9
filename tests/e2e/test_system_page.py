"""The System page: the device the backend chose, the engines installed, memory, and every setting with secrets
redacted."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, Response, expect
from pydantic import SecretStr

from tests.e2e.support import Orchard, screenshot

SECRET = "hf_e2eSecretTokenThatMustNeverBeShown123"


@pytest.mark.parametrize("settings_overrides", [{"hf_token": SecretStr(SECRET)}])
def test_system_page_shows_device_and_settings_with_the_token_redacted(page: Page, orchard: Orchard) -> None:
    config = orchard.get("/config").json()
    redacted = config["settings"]["hf_token"]
    assert redacted and SECRET not in redacted  # the API's own placeholder, whatever it is
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))

    page.goto("/system")

    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="System", level=1)).to_be_visible()
    for card in ("Device", "Engines", "Memory", "Settings"):
        expect(main.get_by_role("heading", name=card, exact=True)).to_be_visible()
    device_card = main.locator("section").filter(has=page.get_by_role("heading", name="Device", exact=True))
    expect(device_card).to_contain_text(config["device"])
    expect(device_card).to_contain_text(config["dtype"])
    engines = main.get_by_role("list", name="Engines")
    for engine in config["engines"]:  # which engines are here, and how to add llama.cpp where it is missing
        item = engines.get_by_role("listitem", name=engine["name"], exact=True)
        expect(item).to_contain_text("Installed" if engine["available"] else "Not installed")
        if engine["hint"]:
            expect(item).to_contain_text(engine["hint"])
    token_row = main.get_by_role("row").filter(has=page.get_by_role("rowheader", name="ORCHARD_HF_TOKEN"))
    expect(token_row).to_contain_text(redacted)
    endpoint_row = main.get_by_role("row").filter(has=page.get_by_role("rowheader", name="ORCHARD_HF_ENDPOINT"))
    expect(endpoint_row).to_contain_text(orchard.hub.endpoint)
    expect(main.get_by_role("rowheader", name=re.compile(r"^ORCHARD_"))).to_have_count(len(config["settings"]))

    assert SECRET not in page.locator("body").inner_text()
    assert SECRET not in page.content()
    for response in responses:  # nor in anything the app fetched
        if response.request.resource_type in ("fetch", "xhr", "document"):
            assert SECRET not in response.text(), response.url
    screenshot(page, "system")
