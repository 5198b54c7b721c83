#!/usr/bin/env bash
# The whole door on arm64, emulated, against x86_64:
#
#   scripts/arm64-check.sh [--fresh] [--lock FILE]
#
# Builds (once; cached in $PEEPHOLE_ARM64_CACHE, default ~/.cache/peephole/arm64)
# a Debian bookworm arm64 root, the base of Raspberry Pi OS (64-bit), with
# debootstrap --foreign and its second stage under proot and qemu-aarch64-static
# (-cpu cortex-a72, the Pi 4's core). Installs peephole into it as a Pi gets it,
# with firmware_scripts/install.sh --no-pi-camera (python3-picamera2 and
# python3-libcamera exist only in Raspberry Pi's repository: untested here). Then,
# on both machines, scripts/arm64/door.sh: enroll Lin-Manuel Miranda and Alex
# Lacamoire from their photos, run the Hamilton clip, identify the photos; and
# scripts/arm64/compare.py prints the report and fails on any difference a user
# would see.
#
#   --fresh      rebuild the root from debootstrap (the cache is used otherwise)
#   --lock FILE  install FILE as requirements/device.lock in the root (a broken lock
#                shows how a failed aarch64 install is reported)
#
# Needs debootstrap, proot and qemu-user-static (apt-get install them),
# the shared data ($PEEPHOLE_SHARED or ../shared) and .venv (scripts/setup-venv.sh).
# The installed root is kept for the next run while the lock is unchanged; each
# run re-runs install.sh over it (a Pi's upgrade path).
set -euo pipefail
cd "$(dirname "$0")/.."
project=$PWD
cache=${PEEPHOLE_ARM64_CACHE:-${HOME:-/root}/.cache/peephole/arm64}
mirror=http://deb.debian.org/debian
fresh=0
lock=$project/requirements/device.lock
die() {
    echo "arm64-check: error: $*" >&2
    exit 1
}
while (($#)); do
    case "$1" in
        --fresh) fresh=1; shift ;;
        --lock) lock=$(realpath "${2:?--lock needs a file}"); shift 2 ;;
        -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ -f "$lock" ]] || die "no lock file $lock"
for tool in debootstrap proot qemu-aarch64-static; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is missing: apt-get install debootstrap proot qemu-user-static"
done
shared=$(realpath "${PEEPHOLE_SHARED:-../shared}" 2>/dev/null) ||
    die "the shared data is missing: set PEEPHOLE_SHARED"
[[ -f "$shared/data/video/short_hamilton_clip.mp4" ]] || die "the Hamilton clip is missing from $shared"
[[ -x .venv/bin/peephole ]] || die ".venv has no peephole: run scripts/setup-venv.sh dev"

# A pin that names x86_64 alone leaves aarch64 without the package: said before any emulation.
.venv/bin/python scripts/arm64/compare.py --lock "$lock" || exit 1

# pip inside the root trusts what pip here trusts: the bundle is copied into the
# root (never bind this machine's /etc/ssl into it: the root's own ca-certificates
# would write through the binding).
ca_bundle=$(.venv/bin/python -m pip config get global.cert 2>/dev/null || true)
ca_bundle=${PIP_CERT:-${ca_bundle:-/etc/ssl/certs/ca-certificates.crt}}
[[ -f "$ca_bundle" ]] || die "no CA bundle for pip at $ca_bundle (set PIP_CERT)"

base=$cache/base
root=$cache/root
# Another lock (--lock) gets a root of its own: the cached one stays as it is.
[[ "$lock" == "$project/requirements/device.lock" ]] || root=$cache/root-other-lock
mkdir -p "$cache/pip"
started=$SECONDS
step() { printf '== %s (%d s so far)\n' "$*" $((SECONDS - started)); }

# Run a command inside an arm64 root, emulated, as a fake root, with a clean
# environment. /proc/cpuinfo is a Pi 4's: qemu-user shows this machine's, on which
# XNNPACK's CPU detection crashes. proot does not translate the paths of
# faccessat2 (Python's os.access), so the folders the door reads are bound at the
# same path inside and out; and pip, which finds site-packages unwritable through that
# call, is told not to fall back to a user install (PIP_USER=0), and keeps its cache
# of downloads at the same path inside and out too. apt's signature check
# fails the same way: apt-get update keeps debootstrap's verified package lists.
binds=()
in_root() {
    local target=$1
    shift
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive QEMU_CPU=cortex-a72 \
        PIP_CERT=/etc/peephole-ca.pem PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_USER=0 \
        PIP_CACHE_DIR="$cache/pip" \
        ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
        ${no_proxy:+no_proxy=$no_proxy} ${DEBOOTSTRAP_DIR:+DEBOOTSTRAP_DIR=$DEBOOTSTRAP_DIR} \
        proot -0 -r "$target" -q qemu-aarch64-static -w / \
        -b /dev -b /proc -b /sys -b "$project/scripts/arm64/cpuinfo-pi4:/proc/cpuinfo" \
        -b "$cache/pip" "${binds[@]}" "$@"
}

if ((fresh)) || [[ ! -f "$base/.peephole-base" ]]; then
    step "debootstrap: Debian bookworm arm64 into $base"
    rm -rf "$base" "$base.tmp" "$root"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$base.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        die "debootstrap's first stage failed (see $cache/debootstrap.log)"
    # Without mounts, the first stage leaves /proc a link to this machine's.
    rm -f "$base.tmp/proc" && mkdir -p "$base.tmp/proc"
    step "debootstrap's second stage, emulated (minutes)"
    DEBOOTSTRAP_DIR=/debootstrap in_root "$base.tmp" /debootstrap/debootstrap --second-stage \
        >>"$cache/debootstrap.log" 2>&1 ||
        die "debootstrap's second stage failed (see $cache/debootstrap.log)"
    # apt drops to its _apt user for downloads, which a fake root cannot.
    echo 'APT::Sandbox::User "root";' >"$base.tmp/etc/apt/apt.conf.d/99peephole-proot"
    touch "$base.tmp/.peephole-base"
    mv "$base.tmp" "$base"
fi

lock_sum=$(sha256sum "$lock" | cut -d' ' -f1)
if [[ ! -f "$root/.peephole-lock" ]] || [[ $(cat "$root/.peephole-lock") != "$lock_sum" ]]; then
    step "a fresh root from the base (the lock changed or no root yet)"
    rm -rf "$root"
    cp -a "$base" "$root"
fi
rm -f "$root/.peephole-lock"
cp "$ca_bundle" "$root/etc/peephole-ca.pem"

# The source as git has it, as a Pi's checkout would.
rm -rf "$root/tmp/peephole-src"
mkdir -p "$root/tmp/peephole-src"
git ls-files -z --cached --others --exclude-standard | tar -c --null -T - -f - | tar -C "$root/tmp/peephole-src" -xf -
cp "$lock" "$root/tmp/peephole-src/requirements/device.lock"

work=$(mktemp -d "${TMPDIR:-/tmp}/peephole-arm64.XXXXXX")
trap 'rm -rf "$work"' EXIT
binds=(-b "$work" -b "$shared")

step "firmware_scripts/install.sh --no-pi-camera, emulated"
if ! in_root "$root" /tmp/peephole-src/firmware_scripts/install.sh --no-pi-camera >"$work/install.log" 2>&1; then
    cp "$work/install.log" "$cache/install.log"
    echo "arm64-check: the install's output is in $cache/install.log" >&2
    .venv/bin/python scripts/arm64/compare.py --install-log "$cache/install.log" "$lock" || exit 1
fi
grep -E '^(untested|systemd is not)' "$work/install.log" | sed 's/^/  /'
echo "$lock_sum" >"$root/.peephole-lock"

# Both machines watch the same frames: decoding the clip is not bit-exact across
# architectures (OpenCV's FFmpeg converts YUV to BGR with other SIMD code on each:
# 1-2 grey levels apart on 70-80% of the pixels), and a camera gives each board
# its own frames anyway. The frames are decoded once, here, into lossless PNGs
# (the float detector and face mesh still differ a little on the same frame).
step "the Hamilton clip decoded once, on x86_64, into PNG frames"
.venv/bin/python - "$shared/data/video/short_hamilton_clip.mp4" "$work/frames" <<'PY'
import sys
from pathlib import Path

import cv2

clip, folder = cv2.VideoCapture(sys.argv[1]), Path(sys.argv[2])
folder.mkdir()
count = 0
while True:
    ok, frame = clip.read()
    if not ok:
        break
    cv2.imwrite(str(folder / f"{count:04d}.png"), frame)
    count += 1
print(f"  {count} frames")
PY
step "the door on x86_64"
scripts/arm64/door.sh "$project/.venv" "$work/x86_64" "$shared" "$work/frames" 2>"$work/x86_64.log" ||
    die "the door failed on x86_64: $(tail -n 1 "$work/x86_64.log")"
step "the door on aarch64, emulated (minutes)"
in_root "$root" /tmp/peephole-src/scripts/arm64/door.sh /opt/peephole/venv "$work/aarch64" "$shared" "$work/frames" \
    2>"$work/aarch64.log" || {
    cp "$work/aarch64.log" "$cache/door.log"
    die "the door failed on aarch64: $(grep -v '^INFO' "$work/aarch64.log" | tail -n 1) (all of it: $cache/door.log)"
}
rm -rf "$work/frames" "$cache/last" && cp -r "$work" "$cache/last"
step "report (kept in $cache/last)"
.venv/bin/python scripts/arm64/compare.py "$work/x86_64" "$work/aarch64" "$lock"
