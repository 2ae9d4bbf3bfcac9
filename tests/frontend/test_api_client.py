"""The frontend's API client is generated from the backend's schema: these fail when either is stale.

Fix with ``scripts/gen-api`` and commit the result.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

from scripts.openapi import SCHEMA_PATH, schema_text

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
GENERATED = FRONTEND / "src" / "api" / "generated"


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_openapi_json_matches_the_backend() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "frontend/openapi.json is stale: run scripts/gen-api"
    )


def test_generated_client_matches_openapi_json(tmp_path: Path) -> None:
    assert (FRONTEND / "node_modules" / ".bin" / "openapi-ts").exists(), "run `npm ci` in frontend/ first"
    for name in ("openapi-ts.config.ts", "openapi.json", "package.json"):
        shutil.copy(FRONTEND / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(FRONTEND / "node_modules")
    subprocess.run(
        [str(FRONTEND / "node_modules" / ".bin" / "openapi-ts")], cwd=tmp_path, check=True, capture_output=True
    )
    fresh, committed = _tree(tmp_path / "src" / "api" / "generated"), _tree(GENERATED)
    assert fresh.keys() == committed.keys(), "the generated client's files differ: run scripts/gen-api"
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert not stale, f"stale generated files {stale}: run scripts/gen-api"
