"""Browser tests: the built web app, served by the real backend, driven in headless Chromium by Playwright.

The app is built once per session; each test gets its own backend (settings, caches and a Hub-compatible
server from ``tests/conftest.py``) on a free port, and its own browser context. Playwright drives the system's
Chromium (``/usr/bin/chromium``, or ``ORCHARD_E2E_BROWSER``): it never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from backend.config import Settings
from tests.e2e.support import VIEWPORT, BrowserErrors, Orchard
from tests.factories import make_model
from tests.hub_server import HubServer
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
DEFAULT_BROWSER = "/usr/bin/chromium"
# Flags for a closed network: nothing in the background may try to phone home, and no GPU is assumed.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
expect.set_options(timeout=10_000)  # a 2-core CI machine running torch beside the browser is not fast


@pytest.fixture(scope="session")
def small_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama of a few MB (hidden size 256): big enough that a throttled download shows its progress."""
    return make_model(tmp_path_factory.mktemp("small-llama") / "small-llama", "llama", hidden_size=256)


@pytest.fixture(scope="session")
def ui_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The web app built once for the session, as the backend serves it (``Settings.ui_dir``)."""
    out = tmp_path_factory.mktemp("ui-build")
    command = ["npx", "--no-install", "vite", "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn"]
    try:
        result = subprocess.run(command, cwd=FRONTEND, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.fail(f"Could not build the web app ({' '.join(command)} in frontend/): {err}", pytrace=False)
    if result.returncode != 0 or not (out / "index.html").is_file():
        pytest.fail(
            f"Building the web app failed ({' '.join(command)} in frontend/, exit {result.returncode}); "
            f"run `cd frontend && npm ci` first.\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return out


def _browser_path() -> str:
    path = os.environ.get("ORCHARD_E2E_BROWSER") or DEFAULT_BROWSER
    found = shutil.which(path)
    if found is None:
        pytest.fail(
            f"The browser tests need Chromium at {path!r}, and there is none. Install it with "
            "`sudo apt-get update && sudo apt-get install -y chromium` (Debian/Ubuntu; `.ci/run` does this), "
            "or point ORCHARD_E2E_BROWSER at a Chromium or Chrome binary.",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile (Playwright's ``launch`` gives each launch its own)."""
    executable = _browser_path()
    try:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
    except Exception as err:  # any launch failure means the same: no usable browser
        pytest.fail(
            f"Chromium at {executable!r} did not start: {err}\nReinstall it with "
            "`sudo apt-get install -y chromium`, or set ORCHARD_E2E_BROWSER to a working binary.",
            pytrace=False,
        )
    yield browser
    browser.close()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings a test wants before the server starts: parametrize ``settings_overrides`` to change them."""
    return {}


@pytest.fixture
def orchard(
    settings: Settings,
    hub: HubServer,
    local_models: Path,
    ui_build: Path,
    settings_overrides: dict[str, Any],
) -> Iterator[Orchard]:
    """The real backend (``create_app`` under uvicorn) on 127.0.0.1, serving the built app at ``/``.

    The models directory holds tiny-llama and tiny-gpt2; ``settings.hf_endpoint`` points at ``hub``.
    """
    settings.ui_dir = ui_build
    for name, value in settings_overrides.items():
        setattr(settings, name, value)
    with live_server(settings) as server:
        yield Orchard(url=server.url, settings=settings, hub=hub)


@pytest.fixture
def browser_errors() -> BrowserErrors:
    return BrowserErrors()


@pytest.fixture
def page(browser: Browser, orchard: Orchard, browser_errors: BrowserErrors) -> Iterator[Page]:
    """A page in a fresh browser context (1280x800) whose relative URLs go to ``orchard``.

    After the test, no console error and no uncaught exception may have happened, other than the failed
    requests the test declared with ``browser_errors.expect_failed_request``.
    """
    context = browser.new_context(base_url=orchard.url, viewport=VIEWPORT, reduced_motion="reduce")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("console", browser_errors.on_console)
    page.on("pageerror", browser_errors.on_page_error)
    yield page
    context.close()
    assert not browser_errors.messages, "the page logged errors:\n" + "\n".join(browser_errors.messages)
