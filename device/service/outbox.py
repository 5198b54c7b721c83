"""The durable outbox: every event is stored before it is published, and deleted only on PUBACK.

Rows keep their insertion order (``seq``), so events made while the broker is
down, or before a crash or power cut, are delivered later in the order they
happened. ``event_id`` is unique: storing the same event twice is a no-op.
The database runs in WAL mode with ``synchronous=FULL``: a committed event
survives ``kill -9`` and a power cut.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from device.errors import PeepholeError, disk_full_hint

# Written out, since sqlite-utils cannot declare AUTOINCREMENT (a seq never
# reused, even after the newest row is deleted) or a UNIQUE column.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class OutboxError(PeepholeError):
    """The outbox database cannot be opened or written."""


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    event_id: str
    topic: str
    payload: str
    created: float


class OutboxLock:
    """One running door per outbox: an exclusive lock on ``<outbox>.lock``, held while it runs.

    Two doors on one outbox would each deliver the other's events to its own
    broker. The lock is the kernel's (``flock``): it goes with the process, even
    after ``kill -9``, so a stale lock file never blocks a restart.
    """

    def __init__(self, outbox_path: Path) -> None:
        self.path = outbox_path.with_name(outbox_path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise OutboxError(f"cannot lock outbox {outbox_path}: {error.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(self._fd)
            raise OutboxError(
                f"outbox {outbox_path} is in use by another running door (pid {holder}); "
                "give this one its own with --outbox FILE or [runtime] outbox_path"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode("ascii"), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Outbox:
    """A FIFO of unacknowledged events in one SQLite file, used from one thread."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self._db = db
        self._table = db.table("outbox")
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Outbox:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Who came to the door and when is personal: only the owner may read it
            # (SQLite gives the -wal and -shm files the same mode).
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            connection = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        except (OSError, sqlite3.Error) as error:
            raise OutboxError(f"cannot open outbox {path}: {error}{disk_full_hint(path)}") from None
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            # The connection as it is: no PRAGMA recursive_triggers, no plugins.
            db = sqlite_utils.Database(connection, recursive_triggers=False, execute_plugins=False)
            db.execute(_SCHEMA)
            (check,) = connection.execute("PRAGMA quick_check").fetchone()
        except sqlite3.Error as error:
            connection.close()
            raise OutboxError(
                f"outbox {path} is not a usable database: {error}{disk_full_hint(path)}"
            ) from None
        if check != "ok":
            connection.close()
            raise OutboxError(f"outbox {path} is damaged: {check}")
        return cls(db, path)

    def add(self, event_id: str, topic: str, payload: str) -> bool:
        """Store one event durably; False if that event_id is already stored."""
        record = {"event_id": event_id, "topic": topic, "payload": payload, "created": time.time()}
        changes = self._db.conn.total_changes
        try:
            self._table.insert(record, ignore=True)
        except sqlite3.Error as error:
            raise OutboxError(
                f"cannot store event {event_id} in {self.path}: {error}{disk_full_hint(self.path)}"
            ) from None
        return self._db.conn.total_changes > changes

    def pending(self, limit: int | None = None) -> list[OutboxEntry]:
        """Unacknowledged events, oldest first."""
        rows = self._table.rows_where(
            select="seq, event_id, topic, payload, created", order_by="seq", limit=limit or None
        )
        return [OutboxEntry(**row) for row in rows]

    def remove(self, event_id: str) -> None:
        """The broker acknowledged the event: forget it."""
        try:
            self._table.delete_where("event_id = ?", [event_id])
        except sqlite3.Error as error:
            raise OutboxError(f"cannot remove event {event_id} from {self.path}: {error}") from None

    def __len__(self) -> int:
        return self._table.count

    def close(self) -> None:
        self._db.close()
