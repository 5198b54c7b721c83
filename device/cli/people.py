"""``peephole people``: list, remove and rename enrolled people."""

from __future__ import annotations

import json
import time

import click

from device.cli.app import AppContext, CommandGroup, pass_app
from device.identity.gallery import name_key, people_count
from device.site.key import SiteKey


@click.group(cls=CommandGroup)
def people() -> None:
    """List, remove and rename enrolled people."""


@people.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person.")
@pass_app
def people_list(app: AppContext, as_json: bool) -> None:
    """Names, sample counts for the current model, crops, last seen, and what to do.

    On a site, also each person's pseudonym (what events say with
    ``[site] names_on_broker = false``).
    """
    key = app.models.embedding_key_without_loading()
    with app.open_gallery() as gallery:
        summaries = gallery.summaries(key)
    site_key = SiteKey.from_text(app.config.site.key) if app.config.site.key else None
    if as_json:
        for s in summaries:
            record = {
                "name": s.name,
                "samples": s.samples,
                "other_model_samples": s.other_model_samples,
                "crops": s.crops,
                "last_seen": s.last_seen,
                "status": s.status,
            }
            if site_key is not None:
                record["pseudonym"] = site_key.pseudonym(name_key(s.name))
            click.echo(json.dumps(record, ensure_ascii=False))
        return
    click.echo(f"model {key[:12]}: {people_count(len(summaries))}")
    for s in summaries:
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.last_seen)) if s.last_seen else "-"
        pseudonym = f" {site_key.pseudonym(name_key(s.name))}" if site_key is not None else ""
        click.echo(
            f"{s.name}\tsamples={s.samples} other-model={s.other_model_samples} "
            f"crops={s.crops} last-seen={seen} {s.status}{pseudonym}"
        )


@people.command("remove")
@click.argument("name")
@pass_app
def people_remove(app: AppContext, name: str) -> None:
    """Delete NAME and everything stored about them (embeddings and crops)."""
    with app.open_gallery() as gallery:
        removed = gallery.remove_person(name)
    click.echo(f"removed {removed}")


@people.command("rename")
@click.argument("old")
@click.argument("new")
@pass_app
def people_rename(app: AppContext, old: str, new: str) -> None:
    """Rename OLD to NEW."""
    with app.open_gallery() as gallery:
        before, after = gallery.rename_person(old, new)
    click.echo(f"renamed {before} to {after}")
