"""The SQLite outbox: order, one row per event_id, durable across kill -9, damaged files refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from device.service.outbox import Outbox, OutboxError
from tests.conftest import ROOT


def test_pending_keeps_insertion_order_and_remove_forgets(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "o.db")
    for n in range(5):
        assert outbox.add(f"id{n}", "peephole/door/visitor", f'{{"n":{n}}}')
    outbox.remove("id1")
    outbox.remove("id3")
    assert [e.event_id for e in outbox.pending()] == ["id0", "id2", "id4"]
    assert [e.event_id for e in outbox.pending(limit=2)] == ["id0", "id2"]
    assert len(outbox) == 3
    outbox.close()


def test_the_same_event_is_stored_once(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "o.db")
    assert outbox.add("same", "t", "first")
    assert not outbox.add("same", "t", "second")
    assert [(e.event_id, e.payload) for e in outbox.pending()] == [("same", "first")]
    outbox.close()


def test_committed_events_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    writer = textwrap.dedent(
        f"""
        import os, signal
        from device.service.outbox import Outbox
        outbox = Outbox.open({str(path)!r})
        for n in range(200):
            outbox.add(f"id{{n:03d}}", "t", "x" * 100)
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", writer], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == -9
    assert result.stdout.strip() == "written"
    outbox = Outbox.open(path)
    assert [e.event_id for e in outbox.pending()] == [f"id{n:03d}" for n in range(200)]
    outbox.close()


def test_a_damaged_file_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="not a usable database"):
        Outbox.open(path)
    assert path.read_bytes().startswith(b"this is not a database")


def test_an_unwritable_place_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox.open(blocker / "o.db")
