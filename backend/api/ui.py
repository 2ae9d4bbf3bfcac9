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

DEFAULT_UI_DIR = Path(__file__).resolve().parents[2] / "frontend" / "dist"
# App routes whose path an API route also has (``POST /chat``): the API's route would answer a browser's GET with
# 405 before the low-priority frontend is tried, so a navigation there gets the app explicitly.
SHARED_PATHS = ("/chat",)

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
        return

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def not_built() -> str:
        return NOT_BUILT
