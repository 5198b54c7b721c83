"""``peephole gallery``: export, import and re-embed the gallery."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from device.cli.app import AppContext, CommandGroup, pass_app
from device.errors import GalleryError
from device.identity.enroll import embed_missing_crops
from device.identity.export_format import parse_export, write_export
from device.identity.gallery import Gallery, people_count

logger = logging.getLogger(__name__)


@click.group("gallery", cls=CommandGroup)
def gallery_group() -> None:
    """Back up, restore and re-embed the gallery."""


@gallery_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@pass_app
def gallery_export(app: AppContext, file: Path, force: bool) -> None:
    """Write the whole gallery (people, embeddings of every model, crops) to a JSON FILE."""
    if file.exists() and not force:
        raise GalleryError(f"{file} exists; pass --force to overwrite it")
    with app.open_gallery() as gallery:
        records = gallery.export_records()
    write_export(records, file)
    samples = sum(len(p.embeddings) for p in records)
    click.echo(f"exported {people_count(len(records))}, {samples} embeddings to {file}")


@gallery_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--append", is_flag=True, help="Add samples to people already enrolled.")
@pass_app
def gallery_import(app: AppContext, file: Path, append: bool) -> None:
    """Add the people of an export FILE (all or nothing)."""
    records = parse_export(file)
    with Gallery.open(app.gallery_path) as gallery:
        added = gallery.import_records(records, append=append)
    click.echo(f"imported {people_count(len(records))}, {added} embeddings")


@gallery_group.command("reembed")
@pass_app
def gallery_reembed(app: AppContext) -> None:
    """Embed the stored crops with the current model (after a model change)."""
    embedder = app.embedder()
    with app.open_gallery() as gallery:
        embedded = embed_missing_crops(gallery, embedder)
        stranded = [s.name for s in gallery.summaries(embedder.embedding_key) if s.samples == 0]
    click.echo(f"re-embedded {embedded} crop(s) with model {embedder.embedding_key[:12]}")
    if stranded:
        logger.warning(f"no stored crops, re-enroll: {', '.join(stranded)}")
