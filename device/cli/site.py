"""``peephole site``: make a site key, and see every door of the site."""

from __future__ import annotations

import json
import logging
import os
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from device.cli.app import AppContext, CommandGroup, pass_app
from device.config import SiteConfig
from device.errors import ConfigError
from device.service.mqtt import publish_retained, read_retained
from device.service.topics import OFFLINE, SiteTopics
from device.site.key import ModelSigner, SiteKey
from device.site.model_bundle import ModelBundle, pack_bundle
from device.vision.embedder import FaceEmbedder
from device.vision.manifest import manifest_path_for

logger = logging.getLogger(__name__)


@click.group("site", cls=CommandGroup)
def site_group() -> None:
    """Share one gallery among the doors of a household (docs/site.md)."""


@site_group.command("init")
@click.option("--id", "site_id", required=True, help="The site's name, e.g. 'home'.")
@click.option(
    "--write",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the [site] section to this config file (made readable by its owner only).",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also make a model signing key, written to this new file (keep it off the doors).",
)
def site_init(site_id: str, config_file: Path | None, signing_key: Path | None) -> None:
    """Make a new site key and print (or write) the [site] section every door needs."""
    SiteConfig(id=site_id).validate()
    existing = ""
    if config_file is not None and config_file.exists():
        existing = config_file.read_text(encoding="utf-8")
        try:
            if "site" in tomllib.loads(existing):
                raise ConfigError(f"{config_file} already has a [site] section; not changed")
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_file} is not valid TOML: {error}") from None
    key, text = SiteKey.generate()
    # json.dumps quotes the id the way a TOML basic string needs it.
    section = f'[site]\nid = {json.dumps(site_id)}\nkey = "{text}"\n'
    if signing_key is not None:
        signer, private_text = ModelSigner.generate()
        _write_new_secret(signing_key, private_text + "\n")
        section += f'model_signer = "{signer.public_text}"\n'
        logger.info(
            f"model signing key written to {signing_key}: 'peephole site deploy-model' needs it; "
            "keep it on the machine you deploy from, never on a door"
        )
    if config_file is None:
        click.echo(section, nl=False)
        logger.info(
            f"site key {key.fingerprint}: put this section into the config of every door "
            "of the site (chmod 600); whoever holds it can read and change the site's gallery"
        )
        return
    descriptor = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as stream:
        stream.write(("\n" if existing and not existing.endswith("\n\n") else "") + section)
    config_file.chmod(0o600)
    logger.info(
        f"wrote site {site_id!r} (key {key.fingerprint}) to {config_file}; "
        "copy the same [site] section to every door of the site"
    )


def _write_new_secret(path: Path, text: str) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; not overwritten") from None
    with os.fdopen(descriptor, "w", encoding="ascii") as stream:
        stream.write(text)


@site_group.command("deploy-model")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--signing-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The file 'peephole site init --signing-key' wrote.",
)
@click.option(
    "--wait", default=10.0, show_default=True, help="Seconds to wait for the broker's PUBACK."
)
@pass_app
def site_deploy_model(app: AppContext, model: Path, signing_key: Path, wait: float) -> None:
    """Publish MODEL (and its manifest) to every door of the site, signed.

    Each door checks the signature, stores the model, embeds its gallery's
    crops with it, then switches to it; the status report shows its model.
    """
    site = app.config.site
    if not (site.id and site.key):
        raise ConfigError("this config has no [site] id and key; see 'peephole site init'")
    signer = ModelSigner.from_file(signing_key)
    if site.model_signer and site.model_signer != signer.public_text:
        raise ConfigError(
            f"{signing_key} is not the signer this site's doors trust ([site] model_signer)"
        )
    manifest = app.models.manifest_override or manifest_path_for(model)
    embedder = FaceEmbedder.from_files(model, manifest, num_threads=1)  # refuse a broken model here
    bundle = ModelBundle(
        site=site.id,
        file_name=model.name,
        model=model.read_bytes(),
        manifest=manifest.read_bytes(),
        deployed=time.time(),
    )
    topic = SiteTopics(app.config.mqtt.topic_prefix, site.id).model
    publish_retained(app.config.mqtt, topic, pack_bundle(bundle, signer), wait)
    logger.info(
        f"deployed {model.name} (embedding key {embedder.embedding_key[:12]}) to site "
        f"{site.id!r}; 'peephole site status' shows each door's model"
    )


COLUMNS = (
    "door",
    "state",
    "model",
    "embedding",
    "people",
    "generation",
    "fps",
    "last frame",
    "backlog",
    "broker",
    "version",
)


def _row(door: str, status: dict[str, Any], availability: str) -> tuple[str, ...]:
    return (
        door,
        availability or "?",
        str(status.get("model_file", "")),
        str(status.get("embedding_key", "")),
        str(status.get("people", "")),
        str(status.get("gallery_generation", "")),
        str(status.get("fps", "")),
        str(status.get("last_frame") or "-"),
        str(status.get("outbox_backlog", "")),
        str(status.get("broker") or "-"),
        str(status.get("version", "")),
    )


@site_group.command("status")
@click.option("--wait", default=2.0, show_default=True, help="Seconds to collect the reports.")
@click.option("--json", "as_json", is_flag=True, help="One JSON status object per door.")
@pass_app
def site_status(app: AppContext, wait: float, as_json: bool) -> None:
    """Every door of this site as the broker last heard from it (its retained status)."""
    config = app.config
    if not config.site.id:
        raise ConfigError("this door is on no site ([site] id); see 'peephole site init'")
    prefix = config.mqtt.topic_prefix
    messages = read_retained(config.mqtt, [f"{prefix}/+/status", f"{prefix}/+/availability"], wait)
    statuses: dict[str, dict[str, Any]] = {}
    availability: dict[str, str] = {}
    for topic, payload in messages:
        door, kind = topic.split("/")[-2:]
        if kind == "availability":
            availability[door] = payload.decode("utf-8", errors="replace")
            continue
        try:
            status = json.loads(payload)
        except ValueError:
            continue
        if isinstance(status, dict) and status.get("site") == config.site.id:
            statuses[door] = status
    if not statuses:
        raise ConfigError(f"no door of site {config.site.id!r} has reported to the broker")
    if as_json:
        for door in sorted(statuses):
            click.echo(json.dumps({**statuses[door], "availability": availability.get(door)}))
        return
    rows = [COLUMNS] + [_row(d, statuses[d], availability.get(d, "")) for d in sorted(statuses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    keys = {str(s.get("site_key")) for s in statuses.values()}
    if len(keys) > 1:
        logger.warning(
            f"the doors hold different site keys ({', '.join(sorted(keys))}): "
            "they cannot read each other's records"
        )
    for door in sorted(statuses):
        if statuses[door].get("model_refused"):
            logger.warning(f"{door} refused a deployed model: {statuses[door]['model_refused']}")
    offline = [d for d in sorted(statuses) if availability.get(d) == OFFLINE]
    if offline:
        logger.warning(f"offline: {', '.join(offline)}")
