"""Regenerate .env.example and the settings table in README.md from backend.config.Settings.

Run: uv run python scripts/settings_docs.py   (tests/backend/test_config_and_cli.py checks both are current)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from backend.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "host": "API",
    "hf_token": "Hugging Face",
    "home_dir": "Paths",
    "device": "Loading and downloads",
    "chat_max_new_tokens": "Chat",
    "train_batch_size": "Training defaults",
    "lora_r": "LoRA defaults",
    "rag_embedding_model": "RAG defaults",
}
DYNAMIC_DEFAULTS = {"hf_cache_dir"}  # computed from HF_HUB_CACHE / HF_HOME at start-up


def shown_default(name: str) -> str:
    default = Settings.model_fields[name].get_default(call_default_factory=True)
    if name in DYNAMIC_DEFAULTS or default is None:
        return ""
    if isinstance(default, list | dict):
        return json.dumps(default)
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def env_example() -> str:
    lines = [
        "# Orchard settings. Copy to .env and uncomment what you change; environment variables win over .env.",
        "# Hugging Face's own variables are honoured too: HF_TOKEN, HF_ENDPOINT, HF_HUB_CACHE / HF_HOME.",
    ]
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            lines += ["", f"# --- {SECTIONS[name]} ---"]
        lines += [f"# {field.description}", f"# ORCHARD_{name.upper()}={shown_default(name)}"]
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `ORCHARD_{name.upper()}` | `{shown_default(name) or '(empty)'}` | {field.description} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    return re.sub(
        r"(<!-- settings:start -->\n).*?(\n<!-- settings:end -->)",
        lambda m: m.group(1) + readme_table() + m.group(2),
        readme,
        flags=re.S,
    )


if __name__ == "__main__":
    (ROOT / ".env.example").write_text(env_example())
    readme = ROOT / "README.md"
    readme.write_text(readme_with_table(readme.read_text()))
