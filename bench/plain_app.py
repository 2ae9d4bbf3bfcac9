"""The baseline for API overhead: a bare FastAPI app answering the same JSON as ``GET /model/current``.

``python -m bench.plain_app PORT BODY_FILE``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

app = FastAPI()
BODY: dict[str, Any] = {}


@app.get("/model/current")
def current() -> dict[str, Any]:
    return BODY


if __name__ == "__main__":
    BODY.update(json.loads(Path(sys.argv[2]).read_text()))
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
