"""A Hub-compatible server (tests/hub_server.py) in its own process, so it does not share the benchmark's GIL.

``python -m bench.hub_process REPO_ID FOLDER [THROTTLE_BYTES_PER_S]`` prints its endpoint, then serves until killed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from tests.hub_server import HubServer

if __name__ == "__main__":
    repo_id, folder = sys.argv[1], Path(sys.argv[2])
    hub = HubServer().start()
    if len(sys.argv) > 3:
        hub.throttle_bytes_per_s = int(sys.argv[3])
    hub.add_repo(repo_id, folder)
    print(hub.endpoint, flush=True)
    threading.Event().wait()
