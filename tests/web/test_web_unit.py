"""The page's service unit: verified by systemd, hardened, a process apart from the door's."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, missing

UNIT = ROOT / "systemd" / "peephole-web.service"
MAX_EXPOSURE = 2.0


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser["Service"]


def need_systemd_analyze() -> None:
    if not shutil.which("systemd-analyze"):
        missing("systemd-analyze is not installed (apt install systemd)")


def test_the_unit_runs_peephole_web_apart_from_the_door_with_no_devices() -> None:
    settings = service()
    assert settings["ExecStart"].endswith("/peephole web")
    assert settings["User"] == "peephole" and settings["PrivateDevices"] == "yes"
    assert settings["CapabilityBoundingSet"] == "" and settings["NoNewPrivileges"] == "yes"
    # /run/peephole is the door's (its unit makes and removes it); the page only reads it.
    assert "RuntimeDirectory" not in settings
    assert "RUNTIME_DIRECTORY=/run/peephole" in settings["Environment"]
    assert "PASSWORD" not in UNIT.read_text().upper()


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    need_systemd_analyze()
    installed = Path(sys.executable).parent / "peephole"
    copy = tmp_path / "peephole-web.service"
    copy.write_text(UNIT.read_text().replace("/opt/peephole/venv/bin/peephole", str(installed)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    broken = tmp_path / "broken" / "peephole-web.service"
    broken.parent.mkdir()
    broken.write_text(copy.read_text().replace("Type=exec", "Type=sometimes"))
    refused = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "Failed to parse service type" in refused.stderr  # the check above can fail


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    need_systemd_analyze()
    copy = tmp_path / "peephole-web.service"
    shutil.copyfile(UNIT, copy)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in done.stderr or "unrecognized option" in done.stderr:
        missing(f"this systemd-analyze cannot review offline: {done.stderr.strip()}")
    overall = re.search(r"Overall exposure level for peephole-web.service: ([0-9.]+)", done.stdout)
    assert overall, done.stdout + done.stderr
    print(f"systemd-analyze security --offline=true: {overall.group(1)}")
    assert float(overall.group(1)) <= MAX_EXPOSURE, done.stdout
