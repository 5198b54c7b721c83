"""The integrity check at open runs once per state of a file in a process (the web page
opens the visits for every request), and again after any change: a damaged file is still
refused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from device.identity.visits import VisitError, VisitStore


def test_a_file_damaged_after_a_clean_open_is_refused_at_the_next(tmp_path: Path) -> None:
    path = tmp_path / "visits.db"
    with VisitStore.open(path) as store:
        store.db.execute("CREATE TABLE filler (blob BLOB)")
        for _ in range(64):
            store.db.execute("INSERT INTO filler VALUES (randomblob(4000))")
        store.db.commit()
    with VisitStore.open(path):
        pass  # sound, and now known to be
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, len(data) - page, page):  # every page after the schema
        data[offset + 8 : offset + 64] = b"\xff" * 56
    time.sleep(0.01)  # a new modification time on coarse clocks too
    path.write_bytes(bytes(data))
    with pytest.raises(VisitError, match=r"corrupt|unusable"), VisitStore.open(path) as store:
        store.find(None)
