"""The request ids of recent commands, kept on disk so a replay is refused across gateway restarts.

An id is remembered until the command it came with could no longer pass the age check anyway
(``issued_at`` + ``commands.max_age`` + the allowed clock skew); older ids are purged as new ones
arrive, so the file stays small. SQLite with ``synchronous=FULL``: an accepted id survives a power cut.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)


class ReplayStoreError(Exception):
    """The store cannot be opened or written: commands are refused (fail closed)."""


class ReplayGuard:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("CREATE TABLE IF NOT EXISTS seen (request_id TEXT PRIMARY KEY, until REAL NOT NULL)")
                db.execute("CREATE INDEX IF NOT EXISTS seen_until ON seen (until)")
            except (OSError, sqlite3.Error) as exc:
                raise ReplayStoreError(f"replay store {self.path}: {exc}") from None
            self._db = db
        return self._db

    def first_use(self, request_id: str, until: float, now: float) -> bool:
        """Record ``request_id`` (remembered until ``until``, a Unix time); False when it was seen already."""
        db = self._open()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM seen WHERE until < ?", (now,))
                cur = db.execute("INSERT OR IGNORE INTO seen (request_id, until) VALUES (?, ?)", (request_id, until))
                return cur.rowcount == 1
        except sqlite3.Error as exc:
            raise ReplayStoreError(f"replay store {self.path}: {exc}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
