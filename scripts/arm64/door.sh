#!/usr/bin/env bash
# The door's commands that scripts/arm64-check.sh runs on both architectures:
#   door.sh VENV OUT SHARED [FRAMES]
# VENV: the virtual environment holding peephole; OUT: an empty folder for what they
# print (events.jsonl, identify.jsonl, probe.json, times); SHARED: the shared data;
# FRAMES: what to watch (default: the Hamilton clip itself; arm64-check.sh gives both
# machines the same decoded frames, as PNG files).
# Lin-Manuel Miranda and Alex Lacamoire are enrolled from one photo each, the
# clip is watched as fast as it goes, and both photos are identified.
set -euo pipefail
venv=${1:?door.sh VENV OUT SHARED}
out=${2:?door.sh VENV OUT SHARED}
shared=${3:?door.sh VENV OUT SHARED}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
video=$shared/data/video
frames=${4:-$video/short_hamilton_clip.mp4}
photos=("$video/lin-manuel-miranda.png" "$video/alex-lacamoire.png")
peephole=$venv/bin/peephole

install -d -m 0700 "$out"
config=$out/config.toml
cat >"$config" <<TOML
[gallery]
path = "$out/gallery.db"

[runtime]
outbox_path = "$out/outbox.db"
status_path = "$out/status.json"
TOML
chmod 600 "$config"
export PEEPHOLE_CONFIG=$config

timed() {
    local name=$1 started
    shift
    started=${EPOCHREALTIME/./}
    "$@"
    echo "$name $(((${EPOCHREALTIME/./} - started) / 1000))" >>"$out/times"
}
timed probe "$venv/bin/python" "$here/probe.py" >"$out/probe.json"
timed enroll_lin "$peephole" -q enroll --name "Lin-Manuel Miranda" --images "${photos[0]}"
timed enroll_alex "$peephole" -q enroll --name "Alex Lacamoire" --images "${photos[1]}"
timed run "$peephole" -v run --source "$frames" --fast >"$out/events.jsonl" 2>"$out/run.log"
timed identify "$peephole" identify --json "${photos[@]}" >"$out/identify.jsonl"
