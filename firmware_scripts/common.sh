# Shared by install.sh, uninstall.sh and deploy-model.sh; sourced, not run.
# shellcheck shell=bash

# --root DIR installs into a target root (an SD card image, a test folder): files
# land under DIR and nothing touches this machine (no apt, useradd, systemctl).
# --dry-run prints every command instead of running it.
root=""
dry_run=0

# Run a command, or print it under --dry-run.
run() {
    if ((dry_run)); then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

# A command that changes this machine itself: skipped when installing into a target root.
system_run() {
    if [[ -n "$root" ]]; then
        printf 'skip (target root %s): %s\n' "$root" "$*"
    else
        run "$@"
    fi
}

# Write stdin to a file with a mode, or describe it under --dry-run.
write_file() {
    local mode=$1 target=$2
    if ((dry_run)); then
        printf '+ write %s (mode %s)\n' "$target" "$mode"
        cat >/dev/null
    else
        local staging
        staging=$(mktemp "${target}.XXXXXX")
        chmod "$mode" "$staging"
        cat >"$staging"
        mv -f "$staging" "$target"
    fi
}

die() {
    printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

set_root() {
    [[ -d "$1" ]] || die "target root $1 is not a folder"
    root=$(cd "$1" && pwd)
}
