"""Write the API's OpenAPI schema to frontend/openapi.json, then the typed client is generated from it.

Run: scripts/gen-api   (tests/test_frontend_client.py fails when either file is stale)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "frontend" / "openapi.json"


def schema_text() -> str:
    from backend.config import Settings
    from backend.main import create_app

    schema = create_app(Settings(warmup=False)).openapi()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH
    out.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {out}")
