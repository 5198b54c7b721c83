"""`peephole calibrate`: a threshold for this gallery from a folder of strangers' photos."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from device.cli import main
from tests.conftest import require_shared


def numbered(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"), key=lambda p: int(p.stem))


def test_calibrate_names_no_more_strangers_than_the_target(
    reference_f32: tuple[Path, Path], tmp_path: Path
) -> None:
    celebrity = require_shared("data/celebrity112")
    model, manifest = reference_f32
    base = ["--db", str(tmp_path / "g.db"), "--model", str(model), "--manifest", str(manifest)]
    for name in ("Hugh_Jackman", "Keira_Knightley", "Mark_Ruffalo"):
        photos = [str(p) for p in numbered(celebrity / name)[:5]]
        result = CliRunner().invoke(main, [*base, "enroll", "--name", name, "--images", *photos])
        assert result.exit_code == 0, result.output
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    for name in ("Tina_Fey", "Will_Smith", "Simon_Cowell"):
        for photo in numbered(celebrity / name)[:20]:
            (strangers / f"{name}_{photo.name}").symlink_to(photo)
    result = CliRunner().invoke(main, [*base, "calibrate", "--strangers", str(strangers), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["stranger_faces"] >= 40 and not report["resolvable"]
    assert report["strangers_named"] == 0.0
    assert 0.0 < report["enrolled_named_correctly_leave_one_out"] <= 1.0

    threshold = str(report["threshold"])
    named = CliRunner().invoke(
        main, [*base, "identify", "--json", "--threshold", threshold, str(strangers)]
    )
    records = [json.loads(line) for line in named.stdout.splitlines()]
    known = [r for r in records if r.get("person")]
    assert known == []

    text = CliRunner().invoke(main, [*base, "calibrate", "--strangers", str(strangers)])
    assert text.exit_code == 0 and f"[model]\nthreshold = {report['threshold']:.3f}" in text.stdout
    assert "cannot resolve" in text.stderr
    loose = CliRunner().invoke(
        main, [*base, "calibrate", "--strangers", str(strangers), "--target-far", "0.1", "--json"]
    )
    looser = json.loads(loose.stdout)
    assert looser["resolvable"] and 0.0 < looser["strangers_named"] <= 0.1
    assert looser["threshold"] < report["threshold"]


def test_calibrate_refuses_an_empty_gallery_and_a_missing_folder(
    reference_f32: tuple[Path, Path], tmp_path: Path
) -> None:
    model, manifest = reference_f32
    base = ["--db", str(tmp_path / "g.db"), "--model", str(model), "--manifest", str(manifest)]
    missing = CliRunner().invoke(main, [*base, "calibrate", "--strangers", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "not a folder" in missing.stderr
    assert not (tmp_path / "g.db").exists()


def test_calibrate_reports_each_folder_and_the_worst_one_decides(
    reference_f32: tuple[Path, Path], tmp_path: Path
) -> None:
    celebrity = require_shared("data/celebrity112")
    utkface = require_shared("data/unlabeled/utkface")
    model, manifest = reference_f32
    base = ["--db", str(tmp_path / "g.db"), "--model", str(model), "--manifest", str(manifest)]
    for name in ("Hugh_Jackman", "Keira_Knightley", "Mark_Ruffalo"):
        photos = [str(p) for p in numbered(celebrity / name)[:5]]
        result = CliRunner().invoke(main, [*base, "enroll", "--name", name, "--images", *photos])
        assert result.exit_code == 0, result.output
    folders = {"celebrities": tmp_path / "celebrities", "utkface": tmp_path / "utkface"}
    for folder in folders.values():
        folder.mkdir()
    for name in ("Tina_Fey", "Will_Smith", "Simon_Cowell"):
        for photo in numbered(celebrity / name)[:20]:
            (folders["celebrities"] / f"{name}_{photo.name}").symlink_to(photo)
    for photo in sorted(utkface.glob("*.jpg"))[:80]:
        (folders["utkface"] / photo.name).symlink_to(photo)

    def calibrated(*paths: Path) -> dict[str, object]:
        arguments = [item for path in paths for item in ("--strangers", str(path))]
        result = CliRunner().invoke(main, ["-q", *base, "calibrate", *arguments, "--json"])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    both = calibrated(*folders.values())
    alone = [calibrated(folder) for folder in folders.values()]
    assert both["threshold"] == max(a["threshold"] for a in alone)  # type: ignore[type-var]
    domains = both["domains"]
    assert isinstance(domains, list)
    assert [d["strangers"] for d in domains] == [str(f) for f in folders.values()]
    for domain, single in zip(domains, alone, strict=True):
        assert domain["faces"] == single["stranger_faces"]
        low, high = domain["interval"]
        assert low <= domain["rate"] <= high and domain["rate"] <= 0.01
    text = CliRunner().invoke(main, [*base, "calibrate", "--strangers", str(folders["utkface"])])
    assert "95% interval" in text.stdout and str(folders["utkface"]) in text.stdout
