"""A site's gallery records: the clock, the sealing, and replication between real gallery files.

No broker here: records pass from one door's replica to another's by hand, in
every order, so the conflict rule can be checked exactly. The broker path is in
tests/site/test_site_e2e.py.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from device.cli import main
from device.config import Config, MqttConfig, load_config, parse_config
from device.errors import ConfigError
from device.identity.enroll import decode_crop, embed_missing_crops
from device.identity.gallery import Gallery, Sample
from device.identity.naming import Namer
from device.identity.visits import VisitStore
from device.service.mqtt import MqttLink
from device.service.replication import GalleryReplication
from device.service.topics import SiteTopics
from device.site.clock import HybridClock, Stamp
from device.site.key import ModelSigner, SealError, SiteKey
from device.site.records import PersonRecord, RecordError, decode_record, encode_record
from device.site.replica import SiteReplica
from device.vision.embedder import FaceEmbedder
from device.vision.manifest import file_sha256
from device.vision.pipeline import FacePipeline
from tests.broker import Broker
from tests.conftest import require_shared
from tests.runtime_helpers import wait_until
from tests.visit_helpers import LIN as LIN_PHOTO
from tests.visit_helpers import photo_visit


@pytest.fixture(scope="module")
def embedder(reference_f32: tuple[Path, Path]) -> FaceEmbedder:
    return FaceEmbedder.from_files(*reference_f32, num_threads=1)


def by_rows(vectors: np.ndarray) -> np.ndarray:
    """The rows in a fixed order (by their first value), to compare sets of embeddings."""
    return vectors[np.argsort(vectors[:, 0])]


def crop(person: str, index: int) -> bytes:
    """A real aligned 112x112 crop of ``person`` (PNG)."""
    return sorted(require_shared(f"data/celebrity112/{person}").glob("*.png"))[index].read_bytes()


class Door:
    """One door's gallery file and replica, with a hand-driven clock."""

    def __init__(self, folder: Path, name: str, key: SiteKey, embedder: FaceEmbedder) -> None:
        self.now = 1_000_000
        self.embedder = embedder
        self.gallery = Gallery.open(folder / f"{name}.db")
        self.replica = SiteReplica(self.gallery, key, HybridClock(name, lambda: self.now))

    def enroll(
        self, name: str, person: str, count: int, first: int = 0, append: bool = False
    ) -> None:
        """Store real crops of ``person`` and their embeddings, as enrollment does."""
        samples = [
            Sample(self.embedder.embed(decode_crop(png)), 0.9, f"photo:{i}", png)
            for i, png in ((i, crop(person, i)) for i in range(first, first + count))
        ]
        self.gallery.add_person_samples(name, samples, self.embedder.embedding_key, append=append)

    def changes(self) -> list[PersonRecord]:
        return self.replica.stamp_local_changes()

    def names(self) -> list[str]:
        return self.gallery.names()


@pytest.fixture
def key() -> SiteKey:
    return SiteKey.generate()[0]


@pytest.fixture
def doors(tmp_path: Path, key: SiteKey, embedder: FaceEmbedder) -> Iterator[tuple[Door, Door]]:
    a, b = Door(tmp_path, "front", key, embedder), Door(tmp_path, "back", key, embedder)
    yield a, b
    a.gallery.close()
    b.gallery.close()


def test_a_stamp_is_later_than_every_stamp_made_or_seen() -> None:
    wall = [5_000]
    clock = HybridClock("front", lambda: wall[0])
    first = clock.tick()
    second = clock.tick()  # same millisecond
    assert first < second and second.counter == 1
    clock.observe(Stamp(9_000, 3, "back"))  # another door, its clock ahead of ours
    after = clock.tick()
    assert after > Stamp(9_000, 3, "back") and after.origin == "front"
    wall[0] = 4_000  # our wall clock steps back
    assert clock.tick() > after


@given(
    st.tuples(st.integers(0, 10**14), st.integers(0, 10**5), st.sampled_from(["a", "b", "ab"])),
    st.tuples(st.integers(0, 10**14), st.integers(0, 10**5), st.sampled_from(["a", "b", "ab"])),
)
def test_stamp_text_sorts_as_the_stamps_do(
    left: tuple[int, int, str], right: tuple[int, int, str]
) -> None:
    one, two = Stamp(*left), Stamp(*right)
    assert (one.to_text() < two.to_text()) == (one < two)
    assert Stamp.from_text(one.to_text()) == one


def test_a_sealed_record_opens_only_with_the_key_and_topic_it_was_sealed_for(key: SiteKey) -> None:
    topic = "peephole/site/home/people/0123"
    sealed = key.seal(b"secret face", topic)
    assert key.open(sealed, topic) == b"secret face"
    assert b"secret face" not in sealed
    tampered = bytearray(sealed)
    tampered[-5] ^= 1
    with pytest.raises(SealError, match="does not verify"):
        key.open(bytes(tampered), topic)
    with pytest.raises(SealError):
        key.open(sealed, "peephole/site/home/people/4567")  # moved to another person's topic
    with pytest.raises(SealError):
        SiteKey.generate()[0].open(sealed, topic)  # another site's key
    with pytest.raises(SealError, match="not a sealed"):
        key.open(b"hello", topic)


def test_record_ids_hide_names_and_agree_between_doors() -> None:
    text = SiteKey.generate()[1]
    one, two = SiteKey.from_text(text), SiteKey.from_text(text)
    assert one.record_id("alice") == two.record_id("alice") != one.record_id("bob")
    # Not a plain hash of the name, which anyone could compute from a list of names.
    assert one.record_id("alice") != hashlib.sha256(b"alice").hexdigest()[:32]
    assert SiteKey.generate()[0].record_id("alice") != one.record_id("alice")
    assert one.fingerprint == two.fingerprint


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[site]\nid = "home"\nkey = "too-short"\n', "not a site key"),
        ('[site]\nkey = "' + "A" * 43 + '"\n', "needs an id"),
        ('[site]\nid = "home/garage"\n', "must not contain"),
        ('[site]\nid = "home"\ncolour = 1\n', "unknown option 'colour'"),
        ('[site]\nmodel_signer = "' + "A" * 43 + '"\n', "needs the site's id and key"),
        ('[site]\nid = "home"\nnames_on_broker = false\n', "needs the site's id and key"),
        (
            '[site]\nid = "home"\nkey = "' + "A" * 43 + '"\nmodel_signer = "xyz"\n',
            "not a public signing key",
        ),
    ],
)
def test_a_bad_site_section_is_refused(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(tomllib.loads(section))


def test_a_damaged_record_is_refused(key: SiteKey) -> None:
    with pytest.raises(RecordError, match="damaged"):
        decode_record(b'{"format": "peephole-site-record/1"}', "00")
    good = encode_record(PersonRecord("00", Stamp(1, 0, "front"), None))
    with pytest.raises(RecordError, match="says it is record"):
        decode_record(good, "11")


def test_an_enrollment_reaches_the_other_door_and_nothing_echoes_back(
    doors: tuple[Door, Door],
) -> None:
    front, back = doors
    front.enroll("Drew Barrymore", "Drew_Barrymore", 3)
    key = front.embedder.embedding_key
    without_crop = Sample(front.embedder.embed(decode_crop(crop("Drew_Barrymore", 3))), 0.8, "x")
    front.gallery.add_person_samples("Drew Barrymore", [without_crop], key, append=True)
    sent = front.changes()
    assert [r.person.name for r in sent if r.person] == ["Drew Barrymore"]
    assert front.changes() == [], "an unchanged gallery has nothing new to send"
    assert back.replica.apply(sent[0]).change == "enrolled"
    assert back.names() == ["Drew Barrymore"]
    assert back.gallery.export_records()[0].crops == front.gallery.export_records()[0].crops
    # Crops travel, their embeddings do not: each door embeds them with its own model.
    assert len(back.gallery.person_embeddings("Drew Barrymore", key)) == 1
    assert embed_missing_crops(back.gallery, back.embedder) == 3
    np.testing.assert_allclose(
        by_rows(back.gallery.person_embeddings("Drew Barrymore", key)),
        by_rows(front.gallery.person_embeddings("Drew Barrymore", key)),
        atol=1e-6,
    )
    assert back.changes() == [], "a record applied here is not a change made here"
    assert back.replica.apply(sent[0]).change == "", "the same record twice changes nothing"
    # A visit moves last_seen: no reason to replicate.
    back.gallery.touch_last_seen("Drew Barrymore", 2e9)
    assert back.changes() == []


def test_removal_rename_and_append_travel_as_whole_records(doors: tuple[Door, Door]) -> None:
    front, back = doors
    front.enroll("Drew Barrymore", "Drew_Barrymore", 2)
    front.enroll("Gwyneth Paltrow", "Gwyneth_Paltrow", 2)
    for record in front.changes():
        back.replica.apply(record)
    back.now += 10
    back.gallery.remove_person("Drew Barrymore")
    back.gallery.rename_person("Gwyneth Paltrow", "Gwyneth")
    back.enroll("Gwyneth", "Gwyneth_Paltrow", 1, first=2, append=True)
    changes = back.changes()
    assert sorted(r.removed for r in changes) == [False, True, True]
    for record in changes:
        front.replica.apply(record)
    assert front.names() == ["Gwyneth"]
    assert embed_missing_crops(front.gallery, front.embedder) == 3
    assert front.changes() == []


def test_the_later_change_wins_on_both_doors_whatever_the_order(doors: tuple[Door, Door]) -> None:
    front, back = doors
    front.enroll("Drew Barrymore", "Drew_Barrymore", 1)
    (enrolled,) = front.changes()
    back.replica.apply(enrolled)
    # Both change Drew while apart: front appends a sample, later back removes her.
    front.now += 5
    front.enroll("Drew Barrymore", "Drew_Barrymore", 1, first=1, append=True)
    (appended,) = front.changes()
    back.now += 50
    back.gallery.remove_person("Drew Barrymore")
    (removed,) = back.changes()
    assert removed.stamp > appended.stamp
    # Each door hears of the other's change: the removal wins on both.
    assert front.replica.apply(removed).change == "removed"
    assert back.replica.apply(appended).change == ""
    assert front.names() == back.names() == []
    assert front.changes() == back.changes() == []


def test_a_stale_copy_on_the_broker_makes_the_door_send_its_own_again(
    doors: tuple[Door, Door],
) -> None:
    front = doors[0]
    front.enroll("Drew Barrymore", "Drew_Barrymore", 1)
    (first,) = front.changes()
    front.replica.mark_sent(first.record_id, first.stamp)
    front.now += 5
    front.gallery.rename_person("Drew Barrymore", "Drew")
    newer = front.changes()
    for record in newer:
        front.replica.mark_sent(record.record_id, record.stamp)
    assert front.replica.unsent() == []
    # The broker (restored from a backup, say) hands the first record back.
    assert front.replica.apply(first).resend
    assert [r.stamp for r in front.replica.unsent()] == [
        r.stamp for r in newer if r.record_id == first.record_id
    ]


def test_a_record_sealed_under_another_persons_id_is_refused(doors: tuple[Door, Door]) -> None:
    front, back = doors
    front.enroll("Drew Barrymore", "Drew_Barrymore", 1)
    (record,) = front.changes()
    moved = PersonRecord("f" * 32, record.stamp, record.person)
    with pytest.raises(RecordError, match="another person"):
        back.replica.apply(moved)
    assert back.names() == []


def test_site_init_writes_a_section_every_door_can_use(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[mqtt]\ndevice_id = "front"\n')
    runner = CliRunner()
    made = runner.invoke(
        main, ["--config", str(config), "site", "init", "--id", "home", "--write", str(config)]
    )
    assert made.exit_code == 0, made.output
    assert config.stat().st_mode & 0o777 == 0o600
    loaded = load_config(config)
    assert loaded.site.id == "home" and loaded.mqtt.device_id == "front"
    key = SiteKey.from_text(loaded.site.key)
    assert key.open(key.seal(b"x", "t"), "t") == b"x"
    again = runner.invoke(
        main, ["--config", str(config), "site", "init", "--id", "home", "--write", str(config)]
    )
    assert again.exit_code == 1 and "already has a [site] section" in again.output
    assert load_config(config).site.key == loaded.site.key, "the first key must survive"
    printed = runner.invoke(main, ["site", "init", "--id", "home"])
    assert printed.exit_code == 0
    assert printed.output.startswith('[site]\nid = "home"\nkey = "')
    refused = runner.invoke(main, ["site", "init", "--id", "home/x"])
    assert refused.exit_code == 1 and "must not contain" in refused.output


def replication_over(
    broker: Broker, gallery: Gallery, key: SiteKey, door: str, embedder: FaceEmbedder
) -> tuple[MqttLink, GalleryReplication]:
    """A door's replication on a real broker, without the camera loop around it."""
    link = MqttLink(MqttConfig(host=broker.host, port=broker.port, device_id=door, discovery=False))
    replication = GalleryReplication(
        SiteReplica(gallery, key, HybridClock(door)),
        key,
        SiteTopics("peephole", "home"),
        link,
        embedder,
    )
    link.start()
    return link, replication


def test_a_door_with_another_key_ignores_the_sites_records_and_says_so_once(
    broker: Broker,
    doors: tuple[Door, Door],
    key: SiteKey,
    embedder: FaceEmbedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    front, back = doors
    front.enroll("Drew Barrymore", "Drew_Barrymore", 2)
    front.enroll("Gwyneth Paltrow", "Gwyneth_Paltrow", 2)
    sender, sending = replication_over(broker, front.gallery, key, "front", embedder)
    stranger, listening = replication_over(
        broker, back.gallery, SiteKey.generate()[0], "back", embedder
    )
    try:

        def all_sent() -> bool:
            sending.step()
            return front.replica.unsent() == []

        def all_refused() -> bool:
            listening.step()
            return listening.refused >= 2

        assert wait_until(all_sent, timeout=10)
        assert wait_until(all_refused, timeout=10)
    finally:
        sender.stop()
        stranger.stop()
    assert back.names() == []
    refusals = [r for r in caplog.records if "site record refused" in r.getMessage()]
    assert len([r for r in refusals if r.levelname == "WARNING"]) == 1
    assert "another site's key" in refusals[0].getMessage()


def test_a_deployed_model_that_does_not_load_falls_back_to_the_previous_one(
    tmp_path: Path, reference_f32: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    good_sha = file_sha256(reference_f32[0])
    for folder, model in ((good_sha, reference_f32[0].read_bytes()), ("broken", b"not a model")):
        (models / folder).mkdir(parents=True)
        (models / folder / "model.tflite").write_bytes(model)
        (models / folder / "model.json").write_bytes(reference_f32[1].read_bytes())
    (models / "current").symlink_to("broken")
    (models / "previous").symlink_to(good_sha)
    site_key = SiteKey.generate()[1]
    signer = ModelSigner.generate()[0].public_text
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gallery]\npath = "{tmp_path / "g.db"}"\n[model]\ndeployed_dir = "{models}"\n'
        f'[site]\nid = "home"\nkey = "{site_key}"\nmodel_signer = "{signer}"\n'
    )
    Gallery.open(tmp_path / "g.db").close()
    result = CliRunner().invoke(main, ["--config", str(config), "gallery", "reembed"])
    assert result.exit_code == 0, result.output
    assert "running the previous one" in caplog.text
    assert (
        f"with model {FaceEmbedder.from_files(*reference_f32).embedding_key[:12]}" in result.output
    )


def test_a_visit_named_at_one_door_reaches_the_other_like_an_enrollment(
    tmp_path: Path, doors: tuple[Door, Door]
) -> None:
    front, back = doors
    pipeline = FacePipeline.from_config(Config(), front.embedder)
    config = Config()
    with VisitStore.open(tmp_path / "visits.db") as store:
        store.save(photo_visit(pipeline, require_shared(LIN_PHOTO), "5555555555", copies=2))
        namer = Namer(front.gallery, store, front.embedder, config.quality, config.enroll)
        namer.name("5555555555", "Lin-Manuel Miranda")
    sent = front.changes()
    assert [r.person.name for r in sent if r.person] == ["Lin-Manuel Miranda"]
    assert back.replica.apply(sent[0]).change == "enrolled"
    assert back.names() == ["Lin-Manuel Miranda"]
    assert back.gallery.export_records()[0].crops == front.gallery.export_records()[0].crops
    person = sent[0].person
    assert person is not None
    assert [c.source for c in person.crops] == ["visit:5555555555/0"]  # the copy: a duplicate
    assert embed_missing_crops(back.gallery, back.embedder) == 1
    key = front.embedder.embedding_key
    np.testing.assert_allclose(
        by_rows(back.gallery.person_embeddings("Lin-Manuel Miranda", key)),
        by_rows(front.gallery.person_embeddings("Lin-Manuel Miranda", key)),
        atol=1e-6,
    )
