"""Jobs recorded in a small SQLite database in the data directory, so they survive restarts."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from backend.schemas.job_base import ACTIVE_STATUSES, JobError
from backend.schemas.jobs import JOB_ADAPTER, AnyJob

logger = logging.getLogger(__name__)

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
        # WAL with synchronous=NORMAL never corrupts the database; a power cut may lose the last few progress
        # writes, which a restart marks interrupted anyway. A full sync per phase change cost loads milliseconds.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._closed = False

    def save(self, job: AnyJob) -> None:
        with self._lock:
            if self._closed:  # a job that ended after the shutdown: the next start marks it interrupted anyway
                logger.debug("job %s ended after the store closed (%s); not saved", job.id, job.status)
                return
            self._db.execute(
                "INSERT INTO jobs (id, kind, status, created_at, data) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET status = excluded.status, data = excluded.data",
                (job.id, job.kind, job.status, job.created_at.isoformat(), job.model_dump_json()),
            )

    def load_all(self) -> list[AnyJob]:
        """Every job recorded; a row this version cannot read (a kind from a newer version) is skipped."""
        with self._lock:
            rows = self._db.execute("SELECT id, data FROM jobs ORDER BY created_at").fetchall()
        jobs = []
        for job_id, data in rows:
            try:
                jobs.append(JOB_ADAPTER.validate_json(data))
            except ValueError:
                logger.warning("skipping job %s: its record is not one this version of Orchard reads", job_id)
        return jobs

    def delete(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in job_ids])

    def mark_interrupted(self) -> list[AnyJob]:
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
            self._closed = True
            self._db.close()
