"""A model deployed to a site: two doors on bridged brokers take it up while they run.

Both doors start on the reference model, with Lin-Manuel Miranda enrolled at
the front (and replicated to the back). A tampered bundle, one deployed to
another site, one signed by a key the site does not trust and one whose model
does not load are each refused and reported, and the doors stay on their
model. Then ``peephole site deploy-model`` deploys the shipped default model:
both doors re-embed Lin's crops with it, switch, and report it; and commands
run later on the door use it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from device.cli import main
from device.identity.gallery import Gallery
from device.site.key import ModelSigner
from device.site.model_bundle import ModelBundle, pack_bundle
from device.vision.embedder import FaceEmbedder, default_model_path
from tests.broker import Broker, Subscriber
from tests.runtime_helpers import (
    enroll_arguments,
    model_options,
    start_run,
    wait_until,
    write_config,
)
from tests.site.test_site_e2e import statuses, write_video

LIN = "Lin-Manuel Miranda"
MODEL_TOPIC = "peephole/site/home/model"

pytestmark = pytest.mark.slow


def invoke(config: Path | None, *args: str) -> str:
    options = ["--config", str(config)] if config is not None else []
    result = CliRunner().invoke(main, [*options, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_signed_model_reaches_every_door_and_a_bad_one_none(
    bridged_brokers: tuple[Broker, Broker], tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    a, b = bridged_brokers
    signing_key = tmp_path / "signer.key"
    site_file = tmp_path / "site.toml"
    invoke(
        None,
        "site",
        "init",
        "--id",
        "home",
        "--write",
        str(site_file),
        "--signing-key",
        str(signing_key),
    )
    assert signing_key.stat().st_mode & 0o777 == 0o600
    configs = {}
    for door, broker in (("front", a), ("back", b)):
        configs[door] = write_config(
            tmp_path / f"{door}.toml",
            gallery=tmp_path / f"{door}.db",
            outbox=tmp_path / f"{door}-outbox.db",
            device_id=door,
            mqtt_extra=f'hosts = ["{broker.host}:{broker.port}"]\nstatus_interval = 1\ndiscovery = false\n',
            extra=f'[model]\ndeployed_dir = "{tmp_path / door}-models"\n\n' + site_file.read_text(),
        )
    invoke(configs["front"], *model_options(reference_f32), *enroll_arguments(LIN))
    reference_key = FaceEmbedder.from_files(*reference_f32).embedding_key
    default = FaceEmbedder.from_files(default_model_path())
    doorway = write_video(tmp_path / "doorway.avi", 90, with_clip=False)
    watcher = Subscriber(b, ["peephole/+/status"]).connect()
    processes = {
        door: start_run(config, reference_f32, "--source", str(doorway), "--realtime")
        for door, config in configs.items()
    }

    def every_door(predicate: Callable[[dict[str, object]], bool]) -> bool:
        latest = statuses(watcher.messages)
        return set(latest) == set(configs) and all(map(predicate, latest.values()))

    def deploy_raw(payload: bytes, refusal: str) -> None:
        watcher.messages.clear()
        sender = Subscriber(a, []).connect()
        sender.client.publish(MODEL_TOPIC, payload, qos=1, retain=True).wait_for_publish(5)
        sender.disconnect()
        assert wait_until(
            lambda: every_door(lambda s: refusal in str(s["model_refused"])), timeout=20
        ), f"not refused by every door: {refusal!r}: {statuses(watcher.messages)}"
        assert every_door(lambda s: s["embedding_key"] == reference_key[:12])

    try:
        assert wait_until(lambda: every_door(lambda s: s["people"] == 1), timeout=60)
        signer = ModelSigner.from_file(signing_key)
        model_bytes = default_model_path().read_bytes()
        manifest_bytes = default_model_path().with_suffix(".json").read_bytes()
        bundle = ModelBundle(
            "home", "peephole_default_int8.tflite", model_bytes, manifest_bytes, time.time()
        )
        tampered = bytearray(pack_bundle(bundle, signer))
        tampered[len(tampered) // 2] ^= 0x01
        deploy_raw(bytes(tampered), "not signed by this site's model signer")
        other_site = ModelBundle(
            "office", bundle.file_name, model_bytes, manifest_bytes, time.time()
        )
        deploy_raw(pack_bundle(other_site, signer), "deployed to site 'office'")
        stranger = ModelSigner.generate()[0]
        deploy_raw(pack_bundle(bundle, stranger), "not signed by this site's model signer")
        broken = ModelBundle(
            "home",
            "broken.tflite",
            model_bytes[: len(model_bytes) // 2],
            manifest_bytes,
            time.time(),
        )
        deploy_raw(pack_bundle(broken, signer), "does not load")

        watcher.messages.clear()
        invoke(
            configs["front"],
            "site",
            "deploy-model",
            str(default_model_path()),
            "--signing-key",
            str(signing_key),
        )
        assert wait_until(
            lambda: every_door(
                lambda s: (
                    s["embedding_key"] == default.embedding_key[:12]
                    and s["model_file"] == "peephole_default_int8.tflite"
                    and s["model_refused"] == ""
                    and s["people"] == 1
                )
            ),
            timeout=30,
        ), statuses(watcher.messages)
    finally:
        for process in processes.values():
            process.terminate()
        for door, process in processes.items():
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, f"{door}: {stderr}"
        watcher.disconnect()

    for door, config in configs.items():
        models = tmp_path / f"{door}-models"
        assert (models / "current").resolve().name == default.sha256
        assert not list(models.glob(".staging-*")), "a refused model left files behind"
        with Gallery.open(tmp_path / f"{door}.db", create=False) as gallery:
            assert len(gallery.person_embeddings(LIN, default.embedding_key)) == 1
        # Commands run later on the door use the deployed model.
        listed = json.loads(invoke(config, "people", "list", "--json"))
        assert (listed["name"], listed["samples"], listed["status"]) == (LIN, 1, "ok")
