#!/usr/bin/env bash
# Install a new embedding model atomically; refuse it (nothing changes) unless it
# loads and matches its manifest; roll back if the service does not come up with it.
#
#   sudo firmware_scripts/deploy-model.sh MODEL.tflite [MANIFEST.json]
#   firmware_scripts/deploy-model.sh --root DIR --python PY MODEL [MANIFEST]
#   firmware_scripts/deploy-model.sh --dry-run MODEL [MANIFEST]
#
# Models live in /var/lib/peephole/models/<sha256>/model.{tflite,json}; the
# symlink "current" (what config.toml names) is switched with one rename.
# The manifest defaults to MODEL with a .json suffix. --python is the
# interpreter that has peephole installed (default: the service's venv).
# --no-restart leaves the service alone.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=firmware_scripts/common.sh
source "$here/common.sh"

python=""
restart=1
files=()
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
        --root) set_root "${2:?--root needs a folder}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --python) python=${2:?--python needs an interpreter}; shift 2 ;;
        --no-restart) restart=0; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) files+=("$1"); shift ;;
    esac
done
((${#files[@]} >= 1 && ${#files[@]} <= 2)) || die "give MODEL.tflite [MANIFEST.json] (see --help)"
model=${files[0]}
manifest=${files[1]:-${model%.*}.json}
[[ -f "$model" ]] || die "no such model file: $model"
[[ -f "$manifest" ]] || die "no manifest for $model: expected $manifest"
python=${python:-$root/opt/peephole/venv/bin/python}
models="$root/var/lib/peephole/models"

sha=$(sha256sum "$model" | cut -d' ' -f1)
target="$models/$sha"

# The check runs the device's own loader: TFLite must load the file and the
# manifest must match it (sha256, input, output), as at service start.
check_model() {
    "$python" - "$1" "$2" <<'PY'
import sys

try:
    from device.vision.embedder import FaceEmbedder

    embedder = FaceEmbedder.from_files(sys.argv[1], sys.argv[2], num_threads=1)
except Exception as error:  # any failure refuses the model, with one line
    print(str(error).splitlines()[0] if str(error) else type(error).__name__)
    sys.exit(1)
print(f"ok: {embedder.manifest.name}, {embedder.embedding_size}-d")
PY
}

if ((dry_run)); then
    run install -d -m 0750 "$models"
    run cp "$model" "$target/model.tflite"
    run cp "$manifest" "$target/model.json"
    printf '+ check %s loads and matches its manifest\n' "$target/model.tflite"
    run ln -sfn "$sha" "$models/current.new"
    run mv -Tf "$models/current.new" "$models/current"
    ((restart)) && system_run systemctl restart peephole.service
    exit 0
fi

[[ -x "$python" ]] || die "no python with peephole at $python (use --python)"
install -d -m 0750 "$models"
staging=$(mktemp -d "$models/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
cp "$model" "$staging/model.tflite"
cp "$manifest" "$staging/model.json"
if ! verdict=$(check_model "$staging/model.tflite" "$staging/model.json"); then
    die "refused $model: $verdict (the current model is unchanged)"
fi
echo "$verdict"
chmod 0750 "$staging"
if [[ -d "$target" ]]; then
    echo "already stored: $target"
else
    mv "$staging" "$target"
fi

previous=$(readlink "$models/current" 2>/dev/null || true)
switch_to() {
    ln -sfn "$1" "$models/current.new"
    mv -Tf "$models/current.new" "$models/current"
}
switch_to "$sha"
system_run chown -R peephole:peephole "$models"
echo "current model: $sha${previous:+ (was $previous)}"

if ((restart)) && [[ -z "$root" ]]; then
    systemctl restart peephole.service
    sleep 5
    if ! systemctl is-active --quiet peephole.service; then
        if [[ -n "$previous" ]]; then
            switch_to "$previous"
            systemctl restart peephole.service
            die "the service did not start with the new model; rolled back to $previous"
        fi
        die "the service did not start with the new model (no previous model to roll back to)"
    fi
fi
