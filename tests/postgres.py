"""A real, throwaway PostgreSQL server for tests: ``initdb`` into a temporary folder, started on a free port of
127.0.0.1 with trust authentication, stopped and removed afterwards.

PostgreSQL refuses to run as root, so under root (CI containers) the server runs as the ``postgres`` user that
Debian's package creates. ``ORCHARD_POSTGRES=1`` (set by ``.ci/run``) makes a missing server or a missing pgvector
an error rather than a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REQUIRED = os.environ.get("ORCHARD_POSTGRES") == "1"


def bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, or Debian's /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # /usr/local/bin/initdb may link into the real folder
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(candidates[-1]).parent if candidates else None


def unavailable() -> str | None:
    """Why no test server can be started here, or None when one can."""
    if bindir() is None:
        return "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A started server; :meth:`database` makes a fresh database and gives its URL."""

    def __init__(self, root: Path, port: int, user: str | None) -> None:
        self.root, self.port, self.user = root, port, user

    def url(self, database: str) -> str:
        return f"postgresql://orchard@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser with psql; its output."""
        psql = bindir() / "psql"  # type: ignore[operator]
        command = [str(psql), "-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", str(self.port), "-U", "orchard"]
        done = subprocess.run([*command, "-d", database, "-c", sql], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def database(self, extension: bool = True) -> str:
        """A new empty database (with the pgvector extension created when ``extension``); its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        if extension:
            self.psql("CREATE EXTENSION vector", database=name)
        return self.url(name)


@contextmanager
def server() -> Iterator[Server]:
    """Start a server in a temporary folder; stop it and remove the folder afterwards."""
    why = unavailable()
    if why:
        raise RuntimeError(why)
    bin_ = bindir()
    assert bin_ is not None
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="orchard-pg-"))
    if user:
        shutil.chown(root, user)
    port = _free_port()
    data, log = root / "data", root / "server.log"

    def run(*command: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, check=False, user=user, cwd=root)
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command[0]} failed: {done.stdout}{done.stderr}{tail}")

    try:
        run(str(bin_ / "initdb"), "-D", str(data), "-U", "orchard", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        run(str(bin_ / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        try:
            yield Server(root, port, user)
        finally:
            run(str(bin_ / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
