"""Open-set identification on celebrity112: best-sample vs mean matching, threshold sweep.

Protocol: the first 12 identities (sorted names) are enrolled from their first 5
images (sorted by number) through ``peephole enroll --images``; the rest of their
images are probes that should be named, and every image of the other 6
identities is a stranger probe that must not be. Probes run through the same
detect-align-gate-embed pipeline; probes the gate refuses are counted apart.

Usage: python bench/openset_celebrity112.py [--model F --manifest F] [--strangers-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from device.config import Config
from device.identity.calibration import ProbeScores, evaluate, threshold_for_far
from device.identity.gallery import Gallery
from device.identity.matching import GalleryIndex, Strategy
from device.vision.embedder import FaceEmbedder
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))
ENROLLED, ENROLL_IMAGES = 12, 5


def numbered(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"), key=lambda p: int(p.stem))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--model", default=str(SHARED / "models/reference/mobilefacenet_insightface_f32.tflite")
    )
    parser.add_argument(
        "--manifest", default=str(ROOT / "tests/fixtures/mobilefacenet_insightface_f32.json")
    )
    parser.add_argument("--margin", type=float, default=0.05)
    args = parser.parse_args()
    data = SHARED / "data/celebrity112"
    identities = sorted(p.name for p in data.iterdir() if p.is_dir())
    enrolled, strangers = identities[:ENROLLED], identities[ENROLLED:]
    db = Path(tempfile.mkdtemp()) / "gallery.db"
    for name in enrolled:
        images = [str(p) for p in numbered(data / name)[:ENROLL_IMAGES]]
        subprocess.run(
            [
                "peephole",
                "--db",
                str(db),
                "--model",
                args.model,
                "--manifest",
                args.manifest,
                "enroll",
                "--name",
                name,
                "--images",
                *images,
            ],
            check=True,
            capture_output=True,
        )
    embedder = FaceEmbedder.from_files(args.model, args.manifest)
    manifest_threshold = embedder.manifest.identification_threshold or 0.4
    pipeline = FacePipeline.from_config(Config(), embedder)
    probes: list[tuple[str | None, Path]] = [
        (name, p) for name in enrolled for p in numbered(data / name)[ENROLL_IMAGES:]
    ] + [(None, p) for name in strangers for p in numbered(data / name)]
    embeddings: list[np.ndarray] = []
    truth: list[str | None] = []
    folder: list[str] = []
    refused = 0
    for who, path in probes:
        faces = pipeline.analyse(read_image(path))
        if not faces or faces[0].embedding is None:
            refused += 1
            continue
        embeddings.append(faces[0].embedding)
        truth.append(who)
        folder.append(path.parent.name)
    with Gallery.open(db, create=False) as gallery:
        rows = gallery.embeddings(embedder.embedding_key)
    print(
        f"gallery: {len(rows.names)} people, {len(rows.vectors)} samples; probes: "
        f"{sum(t is not None for t in truth)} enrolled, {sum(t is None for t in truth)} "
        f"strangers, {refused} refused by the gate or without a face"
    )
    print(
        "| matching | rank-1 | threshold at FAR<=1% | strangers named | enrolled named correctly "
        "| enrolled named wrongly |"
    )
    print("|---|---|---|---|---|---|")
    for strategy in Strategy:
        index = GalleryIndex(rows, strategy)
        matches = [index.identify(e, 1.0, args.margin) for e in embeddings]
        scores = ProbeScores(
            similarity=np.array([m.similarity for m in matches]),
            margin=np.array([m.margin for m in matches]),
            candidate=[m.candidate for m in matches],
            truth=truth,
        )
        stranger = scores.stranger
        chosen = threshold_for_far(
            scores.similarity[stranger], scores.margin[stranger], 0.01, args.margin
        )
        for threshold in sorted({0.30, 0.35, 0.40, 0.45, 0.50, chosen or 0.4, manifest_threshold}):
            report = evaluate(scores, threshold, args.margin)
            tag = " (chosen)" if threshold == chosen else ""
            tag += " (manifest)" if threshold == manifest_threshold else ""
            print(
                f"| {strategy} | {report.rank1:.1%} | {threshold:.3f}{tag} | "
                f"{report.strangers_named:.2%} | {report.enrolled_named_correctly:.1%} | "
                f"{report.enrolled_named_wrongly:.2%} |"
            )
    index = GalleryIndex(rows, Strategy.MEAN)
    matches = [index.identify(e, 1.0, args.margin) for e in embeddings]
    similarity = np.array([m.similarity for m in matches])
    gaps = np.array([m.margin for m in matches])
    print(
        "cross-check (mean): threshold at FAR<=1% from 3 stranger identities, rate on the other 3"
    )
    for calibrate_on in (strangers[0::2], strangers[1::2]):
        chosen_half = np.array([f in calibrate_on for f in folder])
        held_out = np.array(
            [t is None and f not in calibrate_on for t, f in zip(truth, folder, strict=True)]
        )
        half_threshold = threshold_for_far(
            similarity[chosen_half], gaps[chosen_half], 0.01, args.margin
        )
        assert half_threshold is not None
        named = (similarity >= half_threshold) & (gaps >= args.margin)
        print(
            f"  {', '.join(calibrate_on)}: threshold {half_threshold:.3f}, held-out strangers named "
            f"{named[held_out].mean():.2%} of {held_out.sum()}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
