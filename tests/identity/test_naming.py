"""Naming a visit after the fact, on real gallery and visits files with the shipped model.

Visits are made from the two enrollment photos through the real pipeline
(tests/visit_helpers.py); each refusal is checked to change neither file.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from device.config import Config
from device.errors import GalleryError
from device.identity.enroll import decode_crop
from device.identity.gallery import Gallery
from device.identity.naming import ACCEPTED, NEAR_DUPLICATE, Namer, NamingError
from device.identity.visits import VisitError, VisitStore
from device.site.model_choice import ModelChoice
from device.vision.embedder import FaceEmbedder
from device.vision.pipeline import FacePipeline
from tests.conftest import ROOT, require_shared
from tests.visit_helpers import ALEX, GALLERY_TABLES, LIN, VISIT_TABLES, dump, photo_visit

LIN_VISIT, ALEX_VISIT, SUSPECT_VISIT, BLURRED_VISIT = (
    "1111111111",
    "2222222222",
    "3333333333",
    "4444444444",
)
SEED = 20261207


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    return ModelChoice(Config()).embedder()


@pytest.fixture(scope="module")
def visits_template(tmp_path_factory: pytest.TempPathFactory, embedder: FaceEmbedder) -> Path:
    pipeline = FacePipeline.from_config(Config(), embedder)
    path = tmp_path_factory.mktemp("visits") / "visits.db"
    with VisitStore.open(path) as store:
        store.save(photo_visit(pipeline, require_shared(LIN), LIN_VISIT, copies=2))
        store.save(photo_visit(pipeline, require_shared(ALEX), ALEX_VISIT))
        store.save(photo_visit(pipeline, require_shared(LIN), SUSPECT_VISIT, liveness="suspect"))
        store.save(photo_visit(pipeline, require_shared(ALEX), BLURRED_VISIT, blur=4.0))
    return path


@pytest.fixture
def files(tmp_path: Path, visits_template: Path) -> tuple[Path, Path]:
    visits = tmp_path / "visits.db"
    visits.write_bytes(visits_template.read_bytes())
    with Gallery.open(tmp_path / "gallery.db"):
        pass
    return tmp_path / "gallery.db", visits


@pytest.fixture
def namer(files: tuple[Path, Path], embedder: FaceEmbedder) -> Iterator[Namer]:
    gallery_path, visits_path = files
    config = Config()
    with Gallery.open(gallery_path) as gallery, VisitStore.open(visits_path) as store:
        yield Namer(gallery, store, embedder, config.quality, config.enroll)


def samples(gallery: Gallery) -> dict[str, list[str]]:
    """Each person's sample sources (one per embedding)."""
    return {
        row["name"]: sorted(s for s in (row["sources"] or "").split("|") if s)
        for row in gallery.db.query(
            "SELECT p.name, GROUP_CONCAT(e.source, '|') AS sources FROM people p "
            "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id"
        )
    }


def test_a_visit_named_as_a_new_person_becomes_their_samples(
    namer: Namer, embedder: FaceEmbedder
) -> None:
    result = namer.name(LIN_VISIT, "Lin-Manuel Miranda")
    assert (result.person, result.created_person, result.samples) == ("Lin-Manuel Miranda", True, 1)
    # The second crop is the same face: the enrollment's near-duplicate rule drops it.
    assert [v.verdict for v in result.verdicts] == [ACCEPTED, NEAR_DUPLICATE]
    assert samples(namer.gallery) == {"Lin-Manuel Miranda": [f"visit:{LIN_VISIT}/0"]}
    stored = namer.gallery.person_embeddings("Lin-Manuel Miranda", embedder.embedding_key)
    crop = namer.visits.get(LIN_VISIT).crops[0]
    np.testing.assert_allclose(stored[0], embedder.embed(decode_crop(crop.png)), atol=1e-6)
    # Naming it again as the same person does nothing twice.
    again = namer.name(LIN_VISIT, "lin-manuel miranda")
    assert not again.changed and again.summary().endswith("already named as Lin-Manuel Miranda")
    assert samples(namer.gallery) == {"Lin-Manuel Miranda": [f"visit:{LIN_VISIT}/0"]}


def test_append_adds_to_an_enrolled_person_and_is_needed_for_one(namer: Namer) -> None:
    namer.name(LIN_VISIT, "Lin")
    with pytest.raises(GalleryError, match="'Lin' is already enrolled; use --append"):
        namer.name(ALEX_VISIT, "Lin")
    result = namer.name(ALEX_VISIT, "Lin", append=True)
    assert not result.created_person and result.samples == 1
    assert samples(namer.gallery) == {"Lin": [f"visit:{LIN_VISIT}/0", f"visit:{ALEX_VISIT}/0"]}


@pytest.mark.parametrize(
    ("visit_id", "name", "options", "error", "message"),
    [
        ("0123456789", "Bob", {}, VisitError, r"no visit '0123456789' \(it may have been pruned\)"),
        (LIN_VISIT, "   ", {}, GalleryError, "must not be empty"),
        (LIN_VISIT, "x" * 101, {}, GalleryError, "at most 100"),
        (SUSPECT_VISIT, "Lin", {}, NamingError, r"photo or a screen held up .* --allow-suspect"),
        (
            BLURRED_VISIT,
            "Alex",
            {},
            NamingError,
            r"none of the 1 face\(s\) .* \(1 blurry\); nothing was stored",
        ),
    ],
)
def test_refusals_are_one_line_and_change_nothing(
    namer: Namer,
    files: tuple[Path, Path],
    visit_id: str,
    name: str,
    options: dict[str, bool],
    error: type[Exception],
    message: str,
) -> None:
    before = dump(files[0], *GALLERY_TABLES), dump(files[1], *VISIT_TABLES)
    with pytest.raises(error, match=message) as refused:
        namer.name(visit_id, name, **options)
    assert "\n" not in str(refused.value)
    assert (dump(files[0], *GALLERY_TABLES), dump(files[1], *VISIT_TABLES)) == before


def test_a_suspect_visit_is_enrolled_only_when_the_user_insists(namer: Namer) -> None:
    result = namer.name(SUSPECT_VISIT, "Lin", allow_suspect=True)
    assert result.samples == 1


def test_a_wrong_naming_is_corrected_taking_nothing_else_from_the_first_person(
    namer: Namer, embedder: FaceEmbedder
) -> None:
    namer.name(ALEX_VISIT, "Alice")  # Alice's own sample
    namer.name(LIN_VISIT, "Alice", append=True)  # the mistake: Lin's visit named as Alice
    alice_before = samples(namer.gallery)["Alice"]
    with pytest.raises(
        NamingError, match="already named as Alice; to correct it, name it as Bob with --reassign"
    ):
        namer.name(LIN_VISIT, "Bob")
    result = namer.name(LIN_VISIT, "Bob", reassign=True)
    assert (result.moved_from, result.person, result.samples) == ("Alice", "Bob", 1)
    after = samples(namer.gallery)
    assert after == {"Alice": [f"visit:{ALEX_VISIT}/0"], "Bob": [f"visit:{LIN_VISIT}/0"]}
    assert set(alice_before) - set(after["Alice"]) == {f"visit:{LIN_VISIT}/0"}
    # Undo puts it back where it was.
    undone = namer.undo_last()
    assert undone.restored_to == "Alice"
    assert samples(namer.gallery) == {"Alice": sorted(alice_before)}


def test_a_person_who_existed_only_through_the_visit_goes_with_the_correction(namer: Namer) -> None:
    namer.name(LIN_VISIT, "Alex")
    namer.name(LIN_VISIT, "Lin", reassign=True)
    assert samples(namer.gallery) == {"Lin": [f"visit:{LIN_VISIT}/0"]}
    namer.undo_last()
    assert samples(namer.gallery) == {"Alex": [f"visit:{LIN_VISIT}/0"]}
    namer.undo_last()
    assert samples(namer.gallery) == {}
    with pytest.raises(NamingError, match="there is no naming to undo"):
        namer.undo_last()


def test_undo_takes_back_only_the_last_naming(namer: Namer) -> None:
    namer.name(LIN_VISIT, "Lin")
    namer.name(ALEX_VISIT, "Lin", append=True)
    assert namer.undo_last().summary() == (
        f"undone: visit {ALEX_VISIT} is no longer named as Lin (1 sample(s) removed)"
    )
    assert samples(namer.gallery) == {"Lin": [f"visit:{LIN_VISIT}/0"]}
    namer.undo_last()
    assert samples(namer.gallery) == {}  # the naming created Lin: he goes with it


def name_command(gallery: Path, visits: Path, visit_id: str, name: str) -> list[str]:
    config = gallery.parent / f"{name}.toml"
    config.write_text(f'[gallery]\npath = "{gallery}"\n\n[visits]\npath = "{visits}"\n')
    config.chmod(0o600)
    return [
        sys.executable, "-c", "from device.cli import main; main()",
        "--config", str(config), "visits", "name", visit_id, "--as", name,
    ]  # fmt: skip


def test_two_namings_of_one_visit_at_once_give_one_result_and_a_clear_refusal(
    files: tuple[Path, Path],
) -> None:
    gallery, visits = files
    workers = [
        subprocess.Popen(
            name_command(gallery, visits, LIN_VISIT, name),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("Anna", "Bert")
    ]
    results = [(w.wait(timeout=120), w.stdout.read(), w.stderr.read()) for w in workers]  # type: ignore[union-attr]
    won = [r for r in results if r[0] == 0]
    lost = [r for r in results if r[0] != 0]
    assert len(won) == 1 and len(lost) == 1, results
    winner = "Anna" if "Anna" in won[0][1] else "Bert"
    assert won[0][1].strip().endswith(f"named as new person {winner}: 1 sample(s)")
    refusal = [line for line in lost[0][2].splitlines() if "error" in line]
    assert refusal == [
        f"peephole: error: visit {LIN_VISIT} is already named as {winner}; to correct it, "
        f"name it as {'Bert' if winner == 'Anna' else 'Anna'} with --reassign"
    ], lost[0][2]
    with Gallery.open(gallery) as stored:
        assert samples(stored) == {winner: [f"visit:{LIN_VISIT}/0"]}


@pytest.mark.slow
def test_kill_9_during_a_naming_leaves_the_gallery_and_the_visits_exactly_before_or_after(
    files: tuple[Path, Path],
) -> None:
    gallery, visits = files
    template = {path: path.read_bytes() for path in (gallery, visits)}

    def reset() -> None:
        for path, content in template.items():
            path.write_bytes(content)
            for suffix in ("-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)

    def state() -> tuple[object, object]:
        return dump(gallery, *GALLERY_TABLES), dump(visits, *VISIT_TABLES)

    before = state()
    command = name_command(gallery, visits, LIN_VISIT, "Lin")
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    span = time.monotonic() - started  # how long a naming takes here, model loading included
    assert done.returncode == 0, done.stderr
    after = state()
    assert after != before
    rng = random.Random(SEED)
    for attempt in range(12):
        reset()
        worker = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.5, 1.0) * span)
        worker.kill()
        worker.wait()
        assert state() in (before, after), f"attempt {attempt}: half a naming"
