"""The visits database on real SQLite files: stored and read back, pruned, refused when broken."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.config import Config
from device.identity.visits import VisitError, VisitFilter, VisitStore
from device.vision.pipeline import FacePipeline
from tests.conftest import ROOT, require_shared
from tests.visit_helpers import ALEX, LIN, VISIT_TABLES, dump, photo_visit

SEED = 20261207


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline.from_config(Config())


def test_a_visit_is_stored_private_and_read_back_whole(
    tmp_path: Path, pipeline: FacePipeline
) -> None:
    path = tmp_path / "visits.db"
    visit = photo_visit(pipeline, require_shared(LIN), "a1b2c3d4e5", copies=2)
    with VisitStore.open(path) as store:
        store.save(visit)
        assert store.get(visit.id) == dataclasses.replace(visit, crop_count=2)
        listed = store.find()
        assert [v.id for v in listed] == [visit.id]
        assert listed[0].crops == () and listed[0].crop_count == 2
        assert store.crop(visit.id, 1) == visit.crops[1].png
        assert store.total_bytes() == visit.size > 0
        # Saved again when the visit ends: replaced, not doubled.
        store.save(dataclasses.replace(visit, last_seen=visit.last_seen + 5, crops=visit.crops[:1]))
        assert len(store) == 1 and store.get(visit.id).crop_count == 1
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_listing_filters_and_order(tmp_path: Path, pipeline: FacePipeline) -> None:
    lin = photo_visit(pipeline, require_shared(LIN), "0000000001", first_seen=1000.0)
    alex = photo_visit(pipeline, require_shared(ALEX), "0000000002", first_seen=2000.0)
    known = dataclasses.replace(alex, id="0000000003", first_seen=3000.0, person="Alex", known=True)
    with VisitStore.open(tmp_path / "visits.db") as store:
        for visit in (lin, alex, known):
            store.save(visit)
        assert [v.id for v in store.find()] == ["0000000003", "0000000002", "0000000001"]
        assert [v.id for v in store.find(VisitFilter(unknown_only=True))] == [
            "0000000002",
            "0000000001",
        ]
        assert [v.id for v in store.find(VisitFilter(person="Alex"))] == ["0000000003"]
        assert [v.id for v in store.find(VisitFilter(since=1500.0, until=2500.0))] == ["0000000002"]
        assert [v.id for v in store.find(VisitFilter(limit=1))] == ["0000000003"]


def test_pruning_keeps_the_newest_within_age_and_size(
    tmp_path: Path, pipeline: FacePipeline
) -> None:
    base = photo_visit(pipeline, require_shared(LIN), "x")
    now = 1_900_000_000.0
    with VisitStore.open(tmp_path / "visits.db") as store:
        for day in range(10):  # one visit a day, the newest yesterday
            store.save(
                dataclasses.replace(
                    base,
                    id=f"{day:010d}",
                    first_seen=now - (10 - day) * 86400.0,
                    last_seen=now - (10 - day) * 86400.0,
                )
            )
        assert store.prune(max_days=7.5, max_bytes=10**9, now=now) == 3
        assert sorted(v.id for v in store.find()) == [f"{d:010d}" for d in range(3, 10)]
        assert store.prune(max_days=30, max_bytes=3 * base.size, now=now) == 4
        assert sorted(v.id for v in store.find()) == [f"{d:010d}" for d in range(7, 10)]
        assert store.total_bytes() == 3 * base.size


def test_refusals_are_one_line_and_change_nothing(tmp_path: Path, pipeline: FacePipeline) -> None:
    path = tmp_path / "visits.db"
    with VisitStore.open(path) as store:
        store.save(photo_visit(pipeline, require_shared(LIN), "aaaaaaaaaa"))
    before = dump(path, *VISIT_TABLES)
    with VisitStore.open(path) as store:
        for action in (lambda: store.get("0123456789"), lambda: store.forget("0123456789")):
            with pytest.raises(
                VisitError, match=r"no visit '0123456789' \(it may have been pruned\)"
            ):
                action()
        with pytest.raises(VisitError, match="has no crop 7"):
            store.crop("aaaaaaaaaa", 7)
    assert dump(path, *VISIT_TABLES) == before
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    with pytest.raises(VisitError) as refused:
        VisitStore.open(corrupt)
    assert "\n" not in str(refused.value) and str(corrupt) in str(refused.value)
    with pytest.raises(VisitError, match="does not exist"):
        VisitStore.open(tmp_path / "none.db", create=False)


PRUNE = """
import sys
from pathlib import Path
from device.identity.visits import VisitStore
with VisitStore.open(Path(sys.argv[1])) as store:
    print("open", flush=True)
    store.prune(max_days=1e6, max_bytes=int(sys.argv[2]), now=2e9)
"""


@pytest.mark.slow
def test_kill_9_during_pruning_leaves_the_visits_exactly_before_or_after(
    tmp_path: Path, pipeline: FacePipeline
) -> None:
    base = photo_visit(pipeline, require_shared(LIN), "x", copies=4)
    template = tmp_path / "template.db"
    with VisitStore.open(template) as store:
        for index in range(400):
            store.save(
                dataclasses.replace(
                    base, id=f"{index:010d}", first_seen=1e9 + index, last_seen=1e9 + index
                )
            )
    before = dump(template, *VISIT_TABLES)
    after_path = tmp_path / "after.db"
    after_path.write_bytes(template.read_bytes())
    keep = 10 * base.size
    with VisitStore.open(after_path) as store:
        store.prune(max_days=1e6, max_bytes=keep, now=2e9)
    after = dump(after_path, *VISIT_TABLES)
    rng = random.Random(SEED)
    for attempt in range(12):
        path = tmp_path / f"kill{attempt}.db"
        path.write_bytes(template.read_bytes())
        worker = subprocess.Popen(
            [sys.executable, "-c", PRUNE, str(path), str(keep)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None and worker.stdout.readline() == "open\n"
        time.sleep(rng.uniform(0.0, 0.08))
        worker.kill()
        worker.wait()
        state = dump(path, *VISIT_TABLES)
        assert state in (before, after), f"attempt {attempt}: half-pruned"
