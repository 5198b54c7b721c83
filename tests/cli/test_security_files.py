"""Files that hold personal data or secrets are the owner's alone, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from device.identity.gallery import Gallery, Sample
from device.service.outbox import Outbox


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # files would be world-readable by default
    yield
    os.umask(previous)


def modes(folder: Path, stem: str) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.glob(stem + "*")}


def test_outbox_and_its_wal_files_are_owner_only(tmp_path: Path, open_umask: None) -> None:
    outbox = Outbox.open(tmp_path / "outbox.db")
    outbox.add("e1", "peephole/door/visitor", '{"person":"Anna"}')
    found = modes(tmp_path, "outbox.db")
    outbox.close()
    assert set(found) >= {"outbox.db", "outbox.db-wal", "outbox.db-shm"}, found
    assert set(found.values()) == {0o600}, found


def test_gallery_and_its_wal_files_are_owner_only(tmp_path: Path, open_umask: None) -> None:
    with Gallery.open(tmp_path / "gallery.db") as gallery:
        vector = np.ones(128, np.float32) / np.sqrt(128)
        gallery.add_person_samples(
            "Anna", [Sample(vector, 1.0, "t", b"png")], "a" * 64, append=False
        )
        found = modes(tmp_path, "gallery.db")
    assert set(found) >= {"gallery.db", "gallery.db-wal", "gallery.db-shm"}, found
    assert set(found.values()) == {0o600}, found
