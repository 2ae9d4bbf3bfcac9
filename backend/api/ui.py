"""The built React app, served at ``/`` by the same server and port as the API.

FastAPI's own ``app.frontend`` serves the build as low-priority routes: API routes always match first, files in
the build are served as they are, and a browser navigating to one of the app's own routes (``/models``,
``/system``) gets ``index.html``. Only navigations (``Accept: text/html``) fall back, so an API client asking for
a path no route has still gets the JSON 404.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

DEFAULT_UI_DIR = Path(__file__).resolve().parents[2] / "frontend" / "dist"
# App routes whose path an API route also has (``POST /chat``): the API's route would answer a browser's GET with
# 405 before the low-priority frontend is tried, so a navigation there gets the app explicitly.
SHARED_PATHS = ("/chat",)
# App routes whose path is also an API GET route (``GET /datasets`` lists them): a browser's navigation there
# (``Accept: text/html``) gets the app; the app's own requests and API clients (``*/*``, JSON) get the API.
NAVIGATION_PATHS = frozenset({"/datasets"})

NOT_BUILT = """<!doctype html><html><head><meta charset="utf-8"><title>Orchard</title></head>
<body style="font-family: system-ui; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>Orchard is running</h1>
<p>The web app has not been built. Start Orchard with <code>scripts/start</code> (it builds the app), or build it
with <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>.</p>
<p>The API is here: <a href="/docs">/docs</a>.</p></body></html>"""


def mount_ui(app: FastAPI, ui_dir: Path | None) -> None:
    """Serve the built app at ``/``, or a page that says how to build it."""
    dist = ui_dir or DEFAULT_UI_DIR
    index = dist / "index.html"
    if index.is_file():
        app.frontend("/", directory=dist, fallback="index.html")

        async def app_page(request: Request) -> Response:
            if "text/html" not in request.headers.get("accept", ""):
                raise StarletteHTTPException(405, "Method Not Allowed", headers={"Allow": "POST"})
            return FileResponse(index, headers={"Cache-Control": "no-cache"})

        for path in SHARED_PATHS:
            app.add_api_route(path, app_page, methods=["GET"], include_in_schema=False)
        app.add_middleware(AppNavigations, index=index)
        return

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def not_built() -> str:
        return NOT_BUILT


class AppNavigations:
    """Answers a browser's page load of :data:`NAVIGATION_PATHS` with the app's ``index.html``."""

    def __init__(self, app: ASGIApp, index: Path) -> None:
        self.app, self.index = app, index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in NAVIGATION_PATHS:
            accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
            if "text/html" in accept:
                page = FileResponse(self.index, headers={"Cache-Control": "no-cache"})
                await page(scope, receive, send)
                return
        await self.app(scope, receive, send)
