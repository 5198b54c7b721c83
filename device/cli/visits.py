"""``peephole visits``: who came to the door, and naming a visitor after the fact."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from device.cli.app import AppContext, CommandGroup, pass_app
from device.identity.visits import VisitFilter
from device.service.household import Household, VisitView

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhd])$")
_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float | None = None) -> float:
    """``2h``, ``3d``, ``30m`` ago, or a local date/time (``2026-12-07``, ``2026-12-07T18:30``)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        return (now if now is not None else time.time()) - float(relative[1]) * _UNITS[relative[2]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected e.g. 2h, 3d, 30m or 2026-12-07 or 2026-12-07T18:30"
        ) from None


def household(app: AppContext) -> Household:
    return Household(app.config, app.models)


def local_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def record(view: VisitView) -> dict[str, Any]:
    visit = view.visit
    return {
        "visit_id": visit.id,
        "door": visit.door,
        "first_seen": visit.first_seen,
        "last_seen": visit.last_seen,
        "person": visit.person,
        "known": visit.known,
        "named_as": view.named_as,
        "similarity": visit.similarity,
        "margin": visit.margin,
        "liveness": visit.liveness,
        "reason": visit.reason,
        "outcome": visit.outcome,
        "frames": visit.frames,
        "crops": visit.crop_count,
    }


@click.group(cls=CommandGroup)
def visits() -> None:
    """Visits kept on the door: list them, look at one, name or forget it."""


@visits.command("list")
@click.option("--unknown", "unknown_only", is_flag=True, help="Only visitors not recognised.")
@click.option("--person", help="Only visits recognised as this person.")
@click.option("--since", help="Only visits since: 2h, 3d, 30m or a date/time (2026-12-07).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per visit.")
@pass_app
def visits_list(
    app: AppContext,
    unknown_only: bool,
    person: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest visits: id, time, door, who, similarity, liveness, crops."""
    where = VisitFilter(
        unknown_only=unknown_only,
        person=person,
        since=parse_since(since) if since else None,
        limit=limit,
    )
    views = household(app).visits(where)
    if as_json:
        for view in views:
            click.echo(json.dumps(record(view), ensure_ascii=False))
        return
    click.echo(
        f"{'id':<10}  {'time':<19}  {'door':<12}  {'similarity':>10}  {'liveness':<9}  crops  who"
    )
    for view in views:
        visit = view.visit
        similarity = "-" if visit.similarity is None else f"{visit.similarity:.3f}"
        click.echo(
            f"{visit.id:<10}  {local_time(visit.first_seen):<19}  {visit.door[:12]:<12}  "
            f"{similarity:>10}  {visit.liveness or '-':<9}  {visit.crop_count:>5}  {view.label}"
        )


@visits.command("show")
@click.argument("visit_id")
@click.option(
    "--crops",
    "crops_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the visit's faces (PNG) and doorstep (JPEG) into this folder.",
)
@pass_app
def visits_show(app: AppContext, visit_id: str, crops_dir: Path | None) -> None:
    """One visit in full, and what the enrollment gate says of each of its faces."""
    house = household(app)
    view = house.visit(visit_id)
    visit = view.visit
    verdicts = house.verdicts(visit_id) if visit.crops else []
    click.echo(json.dumps(record(view), ensure_ascii=False, indent=2))
    for verdict, crop in zip(verdicts, visit.crops, strict=True):
        click.echo(f"face {verdict.rank}: quality {crop.quality:.3f}, {verdict.verdict}")
    if crops_dir is not None:
        crops_dir.mkdir(parents=True, exist_ok=True)
        for rank, crop in enumerate(visit.crops):
            (crops_dir / f"{visit.id}-{rank}.png").write_bytes(crop.png)
        if visit.context_jpeg:
            (crops_dir / f"{visit.id}-doorstep.jpg").write_bytes(visit.context_jpeg)
        click.echo(f"wrote {len(visit.crops)} face(s) to {crops_dir}")


@visits.command("name")
@click.argument("visit_id")
@click.option("--as", "name", required=True, help="Who the visitor was.")
@click.option("--append", is_flag=True, help="Add the visit's faces to someone already enrolled.")
@click.option(
    "--reassign", is_flag=True, help="The visit was named wrongly: move its faces to NAME."
)
@click.option(
    "--allow-suspect",
    is_flag=True,
    help="Enroll a visit whose liveness was 'suspect' (it looked like a photo or screen).",
)
@pass_app
def visits_name(
    app: AppContext, visit_id: str, name: str, append: bool, reassign: bool, allow_suspect: bool
) -> None:
    """Name VISIT_ID: its faces that pass the enrollment gate become samples of NAME."""
    result = household(app).name_visit(
        visit_id, name, append=append, reassign=reassign, allow_suspect=allow_suspect
    )
    for verdict in result.verdicts:
        if not verdict.accepted:
            click.echo(f"face {verdict.rank}: not taken ({verdict.verdict})", err=True)
    click.echo(result.summary())


@visits.command("undo")
@pass_app
def visits_undo(app: AppContext) -> None:
    """Take the last naming back (a correction goes back to whom it was before)."""
    click.echo(household(app).undo_last_naming().summary())


@visits.command("forget")
@click.argument("visit_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Forget every visit kept.")
@click.option("--unknown", "unknown_only", is_flag=True, help="With --all: only unknown visitors.")
@pass_app
def visits_forget(
    app: AppContext, visit_id: str | None, everything: bool, unknown_only: bool
) -> None:
    """Delete VISIT_ID (or --all) and its images; faces it gave a person stay that person's."""
    if everything == (visit_id is not None):
        raise click.UsageError("give a visit id, or --all")
    if unknown_only and not everything:
        raise click.UsageError("--unknown goes with --all")
    house = household(app)
    if visit_id is None:
        count = house.forget_visits(VisitFilter(unknown_only=unknown_only))
        click.echo(f"forgot {count} visit(s)")
        return
    house.forget_visit(visit_id)
    click.echo(f"forgot visit {visit_id}")
