"""``trainer teacher PREPARED``: the command over ``trainer.teacher``."""

from __future__ import annotations

from pathlib import Path

import click

from trainer.prepared import teacher_cache, usable_rows
from trainer.teacher import DlibTeacher, prepared_samples, teacher_embeddings


@click.command("teacher")
@click.argument("prepared", type=click.Path(path_type=Path))
@click.option(
    "--shard",
    default="0/1",
    show_default=True,
    help="I/N: compute the I-th of N interleaved shards (run N processes).",
)
@click.option(
    "--mirror",
    is_flag=True,
    help="Average each face's descriptor with its mirror image's (about 1.4x the time; "
    "cached apart, used by trainer train --teacher-mirror).",
)
def command(prepared: Path, shard: str, mirror: bool) -> None:
    """Cache dlib teacher embeddings of a prepared folder's faces (resumable)."""
    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError:
        raise click.BadParameter("expected I/N, e.g. 0/2", param_hint="--shard") from None
    if not 0 <= index < count:
        raise click.BadParameter("I must be in [0, N)", param_hint="--shard")
    samples = prepared_samples(prepared, index, count)
    result = teacher_embeddings(
        samples,
        teacher_cache(prepared, index, count, mirror),
        teacher_factory=lambda: DlibTeacher(mirror=mirror),
    )
    click.echo(f"teacher embeddings: {len(usable_rows(result))} of {len(samples)} faces")
