"""What the browser tests share besides fixtures: the running backend, the page's errors, viewports and the
screenshots the README shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from playwright.sync_api import ConsoleMessage, Page, ViewportSize

from backend.config import Settings
from tests.hub_server import HubServer

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}


def screenshot(page: Page, name: str) -> Path:
    """Save what the page shows now (the viewport, no animation) as docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    return path


@dataclass
class Orchard:
    """A running backend: its address, the settings it was built with, and the Hub it talks to."""

    url: str
    settings: Settings
    hub: HubServer

    def get(self, path: str) -> httpx.Response:
        """A plain API call, to learn what the UI should show (the API's own words, not a guess)."""
        return httpx.get(self.url + path, timeout=10, trust_env=False)

    def post(self, path: str, *, timeout: float = 10, **kwargs: Any) -> httpx.Response:
        """A plain API call to set the stage (load a model, store a dataset) or to learn what the UI should show."""
        return httpx.post(self.url + path, timeout=timeout, trust_env=False, **kwargs)


@dataclass
class BrowserErrors:
    """Console errors and uncaught exceptions seen in the page, minus the failed requests a test expects."""

    messages: list[str] = field(default_factory=list)
    expected: list[tuple[str, int]] = field(default_factory=list)

    def expect_failed_request(self, path_suffix: str, status: int) -> None:
        """Chromium logs each 4xx/5xx answer to the console: allow those with this status for a URL whose
        (decoded) path ends with ``path_suffix``, e.g. the model id a test looks up on purpose."""
        self.expected.append((path_suffix, status))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        location = message.location.get("url", "")
        path = unquote(urlsplit(location).path)
        for suffix, status in self.expected:
            failed = f"Failed to load resource: the server responded with a status of {status} "
            if path.endswith(suffix) and message.text.startswith(failed):
                return
        self.messages.append(f"console.error: {message.text} (at {location or 'unknown'})")

    def on_page_error(self, error: Exception) -> None:
        self.messages.append(f"uncaught: {error}")
