"""The SQLite discipline the gallery and the visits share: private files, WAL, all-or-nothing.

A database file is created mode 0600 (faces and visits are personal data;
SQLite gives its ``-wal`` and ``-shm`` files the same mode), runs in WAL mode
so that the service reads while a command writes, and carries its schema
version in ``PRAGMA user_version``. Opening it runs the missing migration
steps and the new version in one ``BEGIN IMMEDIATE`` transaction: an
interrupted migration (an exception, ``kill -9``, a full disk) leaves the file
as it was. Every write goes through :func:`immediate`, which commits entirely
or not at all; SQLite's errors become one-line errors of the database's kind.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import sqlite_utils

from device.errors import PeepholeError, disk_full_hint

BUSY_TIMEOUT_S = 10.0

Migration = Callable[[sqlite_utils.Database], None]


@dataclass(frozen=True)
class DatabaseKind:
    """What a kind of database is called in messages, its error class and its schema steps.

    ``migrations[n]`` takes a file from schema version n to n + 1.
    """

    noun: str
    error: type[PeepholeError]
    migrations: Sequence[Migration]
    # Said after "NOUN PATH does not exist" when a command needs one that is not there.
    missing_hint: str = ""

    @property
    def version(self) -> int:
        return len(self.migrations)


# The files this process found sound: (path, inode, size, mtime); any change checks again.
_CHECKED: set[tuple[str, int, int, int]] = set()


def open_database(
    path: Path, kind: DatabaseKind, *, create: bool
) -> tuple[sqlite3.Connection, bool]:
    """A connection to ``path`` made ready (created, migrated, checked) and whether it is read-only."""
    noun, error = kind.noun, kind.error
    exists = path.exists()
    if not exists and not create:
        raise error(f"{noun} {path} does not exist{kind.missing_hint}")
    if exists and not path.is_file():
        raise error(f"{noun} {path} is not a file")
    # A file without write permission bits is read-only even for root.
    read_only = exists and (not os.access(path, os.W_OK) or not path.stat().st_mode & stat.S_IWUSR)
    try:
        if not exists:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        if read_only:
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
            )
        else:
            connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
    except (OSError, sqlite3.Error) as problem:
        raise error(f"cannot open {noun} {path}: {problem}{disk_full_hint(path)}") from None
    try:
        _prepare(connection, path, kind, create, read_only)
    except sqlite3.Error as problem:
        connection.close()
        raise error(f"{noun} {path} is unusable: {problem}{disk_full_hint(path)}") from None
    except BaseException:
        # An error of the kind, or anything else that stopped a migration half-way
        # (rolled back by the transaction): the file stays as it was.
        connection.close()
        raise
    return connection, read_only


def _prepare(
    connection: sqlite3.Connection, path: Path, kind: DatabaseKind, create: bool, read_only: bool
) -> None:
    noun, error = kind.noun, kind.error
    connection.execute("PRAGMA foreign_keys = ON")
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if version > kind.version:
        raise error(
            f"{noun} {path} has schema version {version}, newer than this "
            f"peephole understands ({kind.version}); upgrade peephole"
        )
    if version == 0 and tables:
        raise error(f"{path} is a SQLite file but not a peephole {noun}")
    if version < kind.version:
        if read_only:
            state = f"is not a {noun}" if version == 0 else "needs an upgrade"
            raise error(f"{path} {state} and is read-only")
        if version == 0 and not create:
            raise error(f"{noun} {path} is empty")
        if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise error(f"{noun} {path}: cannot switch to WAL mode")
        db = sqlite_utils.Database(connection)
        with immediate(connection, path, kind):
            current = int(connection.execute("PRAGMA user_version").fetchone()[0])
            for migrate in kind.migrations[current:]:
                migrate(db)
            connection.execute(f"PRAGMA user_version = {kind.version}")
    # quick_check reads the whole file (30 ms for 1,000 visits); a long-running process
    # (the web page opens the database for every request) checks each state of it once.
    seen = path.stat()
    checked = (str(path.resolve()), seen.st_ino, seen.st_size, seen.st_mtime_ns)
    if checked in _CHECKED:
        return
    check = connection.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise error(f"{noun} {path} is corrupt: {check}")
    _CHECKED.add(checked)


@contextlib.contextmanager
def immediate(connection: sqlite3.Connection, path: Path, kind: DatabaseKind) -> Iterator[None]:
    """One immediate transaction: every change inside commits together or not at all."""
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as problem:
        raise kind.error(
            f"cannot write {kind.noun} {path}: {problem}{disk_full_hint(path)}"
        ) from None
    try:
        yield
        connection.execute("COMMIT")
    except BaseException as problem:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if isinstance(problem, sqlite3.Error):
            raise kind.error(
                f"cannot write {kind.noun} {path}: {problem}{disk_full_hint(path)}"
            ) from None
        raise


class Database:
    """An open database of one kind: closing, ``with``, writes in one transaction."""

    kind: DatabaseKind

    def __init__(self, path: Path, connection: sqlite3.Connection, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self._conn = connection
        self.db = sqlite_utils.Database(connection)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One immediate transaction: every change inside commits together or not at all."""
        if self.read_only:
            raise self.kind.error(f"{self.kind.noun} {self.path} is read-only")
        with immediate(self._conn, self.path, self.kind):
            yield

    def _reading(self) -> contextlib.AbstractContextManager[None]:
        """Database errors while reading (a damaged file) become one-line errors of the kind."""
        return reading(self.path, self.kind)


@contextlib.contextmanager
def reading(path: Path, kind: DatabaseKind) -> Iterator[None]:
    """Database errors while reading (a damaged file) become one-line errors of the kind."""
    try:
        yield
    except sqlite3.Error as problem:
        raise kind.error(f"cannot read {kind.noun} {path}: {problem}") from None
