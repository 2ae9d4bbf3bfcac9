"""Jobs recorded in a small SQLite database in the data directory, so they survive restarts."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from backend.schemas.jobs import ACTIVE_STATUSES, Job, JobError

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
)
"""


class JobStore:
    """Persists :class:`Job` records (never tokens) as JSON rows.

    Args:
        path: The database file; created if missing.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def save(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, status, created_at, data) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET status = excluded.status, data = excluded.data",
                (job.id, job.kind, job.status, job.created_at.isoformat(), job.model_dump_json()),
            )

    def load_all(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM jobs ORDER BY created_at").fetchall()
        return [Job.model_validate_json(data) for (data,) in rows]

    def mark_interrupted(self) -> list[Job]:
        """After a restart: every job that was running is now interrupted (and can be resumed)."""
        interrupted = []
        for job in self.load_all():
            if job.status in ACTIVE_STATUSES:
                now = datetime.now(UTC)
                job = job.model_copy(
                    update={
                        "status": "interrupted",
                        "updated_at": now,
                        "finished_at": now,
                        "error": JobError(
                            code="interrupted",
                            message="The server stopped during this job; resume it to continue where it left off.",
                        ),
                    }
                )
                self.save(job)
                interrupted.append(job)
        return interrupted

    def close(self) -> None:
        with self._lock:
            self._db.close()
