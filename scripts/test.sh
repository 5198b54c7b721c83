#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine: installs Mosquitto (tests
# start their own broker on 127.0.0.1), shellcheck and systemd-analyze (checks of
# the firmware scripts and the units), chromium and chromedriver (the web page's
# tests drive a real headless browser through Selenium), debootstrap, proot and
# qemu-user-static (the emulated arm64 root), the virtual environment with the
# trainer extra, then lint, type checks, the import-layer contracts, pytest (two
# workers, pytest-xdist) and scripts/arm64-check.sh (the whole door on arm64
# against x86; about 12 minutes with a fresh root, 3 with it cached).
#
#   scripts/test.sh [--no-arm64] [PYTEST ARGS...]
#
# --no-arm64 leaves the arm64 check out (a quick run of some tests, say).
set -euo pipefail
cd "$(dirname "$0")/.."
missing_packages=()
[[ -x /usr/sbin/mosquitto ]] || command -v mosquitto >/dev/null 2>&1 || missing_packages+=(mosquitto)
command -v shellcheck >/dev/null 2>&1 || missing_packages+=(shellcheck)
command -v systemd-analyze >/dev/null 2>&1 || missing_packages+=(systemd)
[[ -x /usr/bin/chromium ]] || missing_packages+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing_packages+=(chromium-driver)
arm64=1
if [[ "${1:-}" == --no-arm64 ]]; then
    arm64=0
    shift
fi
if ((arm64)); then
    command -v debootstrap >/dev/null 2>&1 || missing_packages+=(debootstrap)
    command -v proot >/dev/null 2>&1 || missing_packages+=(proot)
    command -v qemu-aarch64-static >/dev/null 2>&1 || missing_packages+=(qemu-user-static)
fi
if (( ${#missing_packages[@]} )); then
    sudo_cmd=""; [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_packages[@]}" >/dev/null
fi
scripts/setup-venv.sh trainer
# shellcheck source=/dev/null
. .venv/bin/activate
ruff check device trainer tests bench scripts/arm64
ruff format --check device trainer tests bench scripts/arm64
mypy
lint-imports --no-cache
# Two workers where there are two cores; each test file stays on one worker
# (its module-scoped brokers and models are made once).
workers=$(( $(nproc) >= 2 ? 2 : 1 ))
python -m pytest -n "$workers" --dist loadfile "$@"
if ((arm64)); then
    scripts/arm64-check.sh
fi
