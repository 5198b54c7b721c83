#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine: installs Mosquitto (tests
# start their own broker on 127.0.0.1), the virtual environment with the trainer
# extra, then lint, type checks and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mosquitto >/dev/null 2>&1 && [[ ! -x /usr/sbin/mosquitto ]]; then
    sudo_cmd=""; [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi
scripts/setup-venv.sh trainer
. .venv/bin/activate
ruff check device trainer tests bench
ruff format --check device trainer tests bench
mypy
exec python -m pytest "$@"
