"""Importing MobileFace V2 (MXNet files, MIT) without MXNet, and training with it as the
online teacher of consistent-view distillation, under MirroredStrategy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from device.config import Config
from device.errors import ModelError
from device.vision.pipeline import FacePipeline
from tests.conftest import missing, require_shared
from trainer.cli import main as trainer_main
from trainer.mxnet_graph import MxnetNetwork, numpy_forward, read_graph, read_params
from trainer.prepare import PrepareOptions, prepare
from trainer.prepared import sample_crops

try:
    import tensorflow  # noqa: F401
except ImportError:
    missing("the trainer extra (TensorFlow) is not installed: scripts/setup-venv.sh trainer")

pytestmark = pytest.mark.trainer

WEIGHTS = "models/pretrained/mobileface_v2"
SYMBOL = "MobileFace_Identification_V2-symbol.json"
PARAMS = "MobileFace_Identification_V2-0000.params"
FACES = 24


@pytest.fixture(scope="module")
def weights() -> Path:
    return require_shared(WEIGHTS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real UTKFace faces through trainer prepare (aligned exactly as the device aligns)."""
    unlabeled = require_shared("data/unlabeled/utkface")
    src = tmp_path_factory.mktemp("faces") / "src"
    src.mkdir()
    for path in sorted(unlabeled.glob("*.jpg"))[-FACES:]:
        shutil.copyfile(path, src / path.name)
    dst = src.parent / "prepared"
    prepare(
        src, dst, PrepareOptions(progress=False, min_score=0.6), FacePipeline.from_config(Config())
    )
    return dst


@pytest.fixture(scope="module")
def imported(weights: Path, prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("imported") / "model.keras"
    result = CliRunner().invoke(
        trainer_main,
        [
            "import-mxnet", "--symbol", str(weights / SYMBOL), "--params", str(weights / PARAMS),
            "--output", str(output), "--crops", str(prepared), "--count", "16", "--licence", "MIT",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "imported 892,384 parameters, 256-d embedding" in result.output
    return output


def test_params_file_is_read_whole(weights: Path) -> None:
    params = read_params(weights / PARAMS)
    assert len(params) == 191
    assert params["conv1_weight"].shape == (32, 3, 3, 3)
    assert params["fc5_weight"].shape == (256, 2048)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in params.values())
    # a running variance is positive wherever batch norm divides by it
    assert all((v > 0).all() for k, v in params.items() if k.endswith("moving_var"))


def test_keras_replica_matches_the_numpy_forward_pass(
    weights: Path, prepared: Path, imported: Path
) -> None:
    import keras

    from trainer.constants import normalise_pixels

    network = MxnetNetwork.load(weights / SYMBOL, weights / PARAMS)
    assert (network.mean, network.std) == (127.5, 128.0)
    crops = sample_crops(prepared, FACES, seed=1)
    reference = numpy_forward(network, crops)
    replica = keras.models.load_model(imported, compile=False).predict(
        normalise_pixels(crops), verbose=0
    )

    def unit(v: np.ndarray) -> np.ndarray:
        normed: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
        return normed

    cosines = np.einsum("ij,ij->i", unit(reference), unit(replica))
    assert cosines.min() >= 0.9999, cosines
    # different faces stay apart: the parity is not that of a constant output
    across = unit(reference) @ unit(reference).T
    assert across[~np.eye(len(crops), dtype=bool)].max() < 0.9
    provenance = json.loads((imported.parent / "provenance.json").read_text())
    assert provenance["weights_licence"] == "MIT"
    assert "min cosine 0.9999" in provenance["import_parity"]


def test_truncated_params_are_refused_in_one_line(weights: Path, tmp_path: Path) -> None:
    data = (weights / PARAMS).read_bytes()
    for size in (10, 40, len(data) // 2, len(data) - 3):
        cut = tmp_path / f"cut{size}.params"
        cut.write_bytes(data[:size])
        with pytest.raises(ModelError, match="truncated MXNet params file"):
            read_params(cut)


def test_malformed_params_are_refused(weights: Path, tmp_path: Path) -> None:
    data = bytearray((weights / PARAMS).read_bytes())
    wrong_magic = tmp_path / "magic.params"
    wrong_magic.write_bytes(b"\x00" * 8 + bytes(data[8:]))
    with pytest.raises(ModelError, match="not an MXNet params file"):
        read_params(wrong_magic)
    bad_array = tmp_path / "array.params"
    data[24:28] = b"\xde\xad\xbe\xef"  # the first array's magic
    bad_array.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="unknown NDArray magic"):
        read_params(bad_array)
    trailing = tmp_path / "trailing.params"
    trailing.write_bytes((weights / PARAMS).read_bytes() + b"\x00")
    with pytest.raises(ModelError, match="trailing bytes"):
        read_params(trailing)


def test_graph_with_an_unknown_operator_is_refused(weights: Path, tmp_path: Path) -> None:
    graph = json.loads((weights / SYMBOL).read_text())
    pooling = next(n for n in graph["nodes"] if n["op"] == "Flatten")
    pooling["op"] = "Pooling"
    changed = tmp_path / "pooling-symbol.json"
    changed.write_text(json.dumps(graph))
    with pytest.raises(ModelError, match="operator Pooling is not supported by the importer"):
        read_graph(changed)
    broken = tmp_path / "broken-symbol.json"
    broken.write_text('{"nodes": [')
    with pytest.raises(ModelError, match="not a readable MXNet graph"):
        read_graph(broken)


def test_cli_refusal_is_one_line(weights: Path, tmp_path: Path, prepared: Path) -> None:
    cut = tmp_path / "cut.params"
    cut.write_bytes((weights / PARAMS).read_bytes()[:1000])
    result = CliRunner().invoke(
        trainer_main,
        [
            "import-mxnet", "--symbol", str(weights / SYMBOL), "--params", str(cut),
            "--output", str(tmp_path / "m.keras"), "--crops", str(prepared), "--licence", "MIT",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainer: error:") and "truncated" in lines[0]


def test_consistent_view_distillation_under_mirrored_strategy(
    prepared: Path, imported: Path, tmp_path: Path
) -> None:
    """A MobileFaceNet student learns from the imported network run online on the same
    augmented views (relation term: 128-d student, 256-d teacher), on two logical CPU
    devices (a fresh process: devices are fixed when TensorFlow starts); then the run
    resumes and its report holds every step."""
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "trainer", "train", str(prepared), "--run", str(run),
        "--preset", "consistent", "--teacher", str(imported), "--batch-size", "8",
        "--cpu-replicas", "2", "--max-steps", "3", "--quiet", "--log-every", "1",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    assert first.returncode == 0, first.stderr[-2000:]
    log = (run / "train.log").read_text()
    assert "replicas 2" in log
    assert json.loads((run / "state.json").read_text())["step"] == 3
    command[command.index("--max-steps") + 1] = "5"
    again = subprocess.run(
        [*command, "--resume"], capture_output=True, text=True, env=env, timeout=400
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed at step 3" in (run / "train.log").read_text()
    assert json.loads((run / "state.json").read_text())["step"] == 5
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in records if "loss" in r}
    assert sorted(losses) == [1, 2, 3, 4, 5]
    # relation loss between a fresh student's and the teacher's similarity matrices
    assert all(0.0 < loss < 2.0 for loss in losses.values()), losses
    assert (run / "report.png").stat().st_size > 1000
