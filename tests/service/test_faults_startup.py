"""``peephole run`` refuses broken parts at start: one line, exit 1, and the broken file untouched."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from device.cli import main
from tests.conftest import require_shared
from tests.runtime_helpers import enroll_people, write_config

CLIP = "data/video/short_hamilton_clip.mp4"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


def break_model(setup: dict[str, Path]) -> Path:
    setup["model"].write_bytes(b"TFL3" + bytes(range(256)) * 8)
    return setup["model"]


def truncate_model(setup: dict[str, Path]) -> Path:
    data = setup["model"].read_bytes()
    setup["model"].write_bytes(data[: len(data) // 2])
    return setup["model"]


def swap_model(setup: dict[str, Path]) -> Path:
    # The quantized model under the float model's manifest: sha256 and quantization differ.
    shutil.copyfile(
        require_shared("models/reference/mobilefacenet_insightface_uint8.tflite"), setup["model"]
    )
    return setup["model"]


def corrupt_gallery(setup: dict[str, Path]) -> Path:
    gallery = setup["gallery"]
    data = bytearray(gallery.read_bytes())
    data[100:4096] = bytes(len(data[100:4096]))  # the schema page zeroed, the header kept
    gallery.write_bytes(bytes(data))
    return gallery


def truncate_gallery(setup: dict[str, Path]) -> Path:
    gallery = setup["gallery"]
    gallery.write_bytes(gallery.read_bytes()[:1500])
    return gallery


def garbage_gallery(setup: dict[str, Path]) -> Path:
    setup["gallery"].write_bytes(b"these are not the faces you are looking for\n" * 50)
    return setup["gallery"]


def garbage_outbox(setup: dict[str, Path]) -> Path:
    setup["outbox"].write_bytes(b"\x00\x01 not sqlite" * 500)
    return setup["outbox"]


def config_is_a_folder(setup: dict[str, Path]) -> Path:
    setup["config"].unlink()
    setup["config"].mkdir()
    return setup["config"]


def config_not_utf8(setup: dict[str, Path]) -> Path:
    setup["config"].write_bytes(b'[mqtt]\nhost = "\xff\xfe"\n')
    return setup["config"]


def config_not_toml(setup: dict[str, Path]) -> Path:
    setup["config"].write_text("[mqtt\nhost = broker\n")
    return setup["config"]


def config_wrong_type(setup: dict[str, Path]) -> Path:
    setup["config"].write_text(setup["config"].read_text() + '\n[camera]\nfps = "fast"\n')
    return setup["config"]


BREAKAGES: dict[str, tuple[Callable[[dict[str, Path]], Path], str]] = {
    "corrupt model": (break_model, "model"),
    "truncated model": (truncate_model, "model"),
    "model does not match its manifest": (swap_model, "sha256"),
    "corrupt gallery": (corrupt_gallery, "gallery"),
    "truncated gallery": (truncate_gallery, "gallery"),
    "gallery that is not a database": (garbage_gallery, "gallery"),
    "outbox that is not a database": (garbage_outbox, "outbox"),
    "config that is a folder": (config_is_a_folder, "config"),
    "config not UTF-8": (config_not_utf8, "config"),
    "config not TOML": (config_not_toml, "TOML"),
    "config with a wrong type": (config_wrong_type, "fps"),
}


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory, reference_f32: tuple[Path, Path]) -> Path:
    gallery = tmp_path_factory.mktemp("enrolled") / "gallery.db"
    enroll_people(gallery, reference_f32)
    return gallery


@pytest.fixture
def setup(tmp_path: Path, enrolled: Path, reference_f32: tuple[Path, Path]) -> dict[str, Path]:
    gallery = tmp_path / "gallery.db"
    shutil.copyfile(enrolled, gallery)
    model = tmp_path / "model.tflite"
    shutil.copyfile(reference_f32[0], model)
    outbox = tmp_path / "outbox.db"
    config = write_config(tmp_path / "config.toml", gallery=gallery, outbox=outbox)
    return {"gallery": gallery, "model": model, "outbox": outbox, "config": config}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_broken_part_is_refused_at_start_in_one_line(
    case: str, setup: dict[str, Path], reference_f32: tuple[Path, Path]
) -> None:
    breakage, expected = BREAKAGES[case]
    broken = breakage(setup)
    before = digest(broken)
    result = CliRunner().invoke(
        main,
        [
            "--config", str(setup["config"]), "--model", str(setup["model"]),
            "--manifest", str(reference_f32[1]),
            "run", "--source", str(require_shared(CLIP)), "--stop-after-frames", "5",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("peephole: error: ")]
    assert len(errors) == 1, result.output
    assert expected.lower() in errors[0].lower(), errors[0]
    assert "Traceback" not in result.output
    assert not any(line.startswith("{") for line in lines), "it ran anyway"
    assert digest(broken) == before, "the broken file was changed"
