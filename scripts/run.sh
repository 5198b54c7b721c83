#!/usr/bin/env bash
# The main job: set up the device runtime and run the camera loop.
#   scripts/run.sh --demo            the shared Hamilton clip, with Lin-Manuel Miranda and
#                                    Alex Lacamoire enrolled from one photo each (in .demo/);
#                                    Lin's visit is then named, and the clip run again
#   scripts/run.sh [RUN OPTIONS]     the configured camera, or --source VIDEO (peephole run --help)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh device >&2
peephole=.venv/bin/peephole
echo "run.sh: peephole is $peephole here (or '. .venv/bin/activate', then 'peephole')" >&2
if [[ ${1:-} != --demo ]]; then
    exec "$peephole" run "$@"
fi
shift
shared=${PEEPHOLE_SHARED:-../shared}
clip=$shared/data/video/short_hamilton_clip.mp4
if [[ ! -f $clip ]]; then
    echo "run.sh: error: the demo needs the shared data: $clip is missing (set PEEPHOLE_SHARED)" >&2
    exit 1
fi
# A household of its own, made afresh each time, so the demo never touches yours.
demo=$PWD/.demo
rm -rf "$demo"
mkdir -p "$demo"
cat > "$demo/config.toml" <<TOML
[gallery]
path = "$demo/gallery.db"

[runtime]
outbox_path = "$demo/outbox.db"
status_path = "$demo/status.json"

[web]
password_file = "$demo/web-password"
TOML
chmod 600 "$demo/config.toml"
export PEEPHOLE_CONFIG=$demo/config.toml
"$peephole" -q enroll --name "Lin-Manuel Miranda" --images "$shared/data/video/lin-manuel-miranda.png"
"$peephole" -q enroll --name "Alex Lacamoire" --images "$shared/data/video/alex-lacamoire.png"
"$peephole" run --source "$clip" "$@"
# One photo is a thin enrollment (device/models/MODEL_CARD.md): on this clip it names Lin
# by the narrowest of margins, if at all. The household names his visit, as it would any
# visit the door saw, and the door knows him by its faces from then on.
found=$("$peephole" visits list --json | .venv/bin/python -c '
import json, sys
seen = [json.loads(line) for line in sys.stdin]
his = [v for v in seen if v["outcome"] == "stranger" or v["person"] == "Lin-Manuel Miranda"]
best = max(his, key=lambda v: v["similarity"]) if his else None
print(best["visit_id"], best["outcome"]) if best else None')
if [[ -n $found ]]; then
    visit=${found% *}
    if [[ ${found#* } == known ]]; then
        echo "run.sh: his one photo named Lin-Manuel Miranda, narrowly; teaching the door from" \
            "his visit: peephole visits name $visit --as 'Lin-Manuel Miranda' --append" >&2
    else
        echo "run.sh: one photo was not enough to name Lin-Manuel Miranda at the door's threshold;" \
            "naming his visit: peephole visits name $visit --as 'Lin-Manuel Miranda' --append" >&2
    fi
    "$peephole" visits name "$visit" --as "Lin-Manuel Miranda" --append >&2
    echo "run.sh: the clip again, with what the door learnt from his visit:" >&2
    "$peephole" run --source "$clip" "$@"
fi
cat >&2 <<HINTS
run.sh: the clip's visits are kept in $demo. Next:
  PEEPHOLE_CONFIG=$demo/config.toml $peephole web                     # then open http://127.0.0.1:8080/ (docs/web.md)
  PEEPHOLE_CONFIG=$demo/config.toml $peephole visits list            # who came, strangers too
  PEEPHOLE_CONFIG=$demo/config.toml $peephole visits name ID --as NAME  # teach the door a visitor
  $peephole enroll --name YOUR_NAME --images photo.jpg               # your own household (docs/usage.md)
HINTS
