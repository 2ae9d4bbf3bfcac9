"""Orchard: a local-first LLM studio."""

__version__ = "0.1.0"

import os as _os

# Local-first: huggingface_hub's telemetry would call the real Hub (once per process, even with another endpoint)
# when Orchard starts or downloads. It reads this variable at import, so it is set before anything imports it;
# set HF_HUB_DISABLE_TELEMETRY=0 to allow it.
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
