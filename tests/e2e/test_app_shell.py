"""The app's routes: served by the backend at every path, reachable from the navigation, and kept on reload."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.support import Orchard


def test_routes_open_directly_survive_a_reload_and_follow_the_navigation(page: Page, orchard: Orchard) -> None:
    main = page.get_by_role("main")
    nav = page.get_by_role("navigation", name="Main")

    page.goto("/current")
    expect(main.get_by_role("heading", name="Current model", level=1)).to_be_visible()
    expect(main.get_by_text("No model loaded")).to_be_visible()
    page.reload()
    expect(page).to_have_url(f"{orchard.url}/current")
    expect(main.get_by_role("heading", name="Current model", level=1)).to_be_visible()
    expect(main.get_by_text("No model loaded")).to_be_visible()

    nav.get_by_role("link", name="System", exact=True).click()
    expect(page).to_have_url(f"{orchard.url}/system")
    expect(main.get_by_role("heading", name="System", level=1)).to_be_visible()
    page.reload()
    expect(main.get_by_role("heading", name="System", level=1)).to_be_visible()

    nav.get_by_role("link", name="Models", exact=True).click()
    expect(page).to_have_url(f"{orchard.url}/models")
    expect(main.get_by_role("heading", name="Models", level=1)).to_be_visible()
    page.go_back()
    expect(page).to_have_url(f"{orchard.url}/system")
    nav.get_by_role("link", name="Current model", exact=True).click()
    expect(main.get_by_role("heading", name="Current model", level=1)).to_be_visible()

    page.goto("/")
    expect(page).to_have_url(f"{orchard.url}/models")
    page.goto("/no-such-page")
    expect(main.get_by_text("There is no page here.")).to_be_visible()
    main.get_by_role("link", name=re.compile("your models", re.IGNORECASE)).click()
    expect(main.get_by_role("heading", name="Models", level=1)).to_be_visible()
