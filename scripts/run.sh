#!/usr/bin/env bash
# The main job: set up the device runtime and run the camera loop.
# With no camera, pass a video: scripts/run.sh --source ../shared/data/video/short_hamilton_clip.mp4
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh device >&2
exec .venv/bin/peephole run "$@"
