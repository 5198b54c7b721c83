#!/usr/bin/env bash
# Remove the peephole service and its virtual environment.
#
#   sudo firmware_scripts/uninstall.sh [--purge]
#   firmware_scripts/uninstall.sh --root DIR [--purge]   # from a target root
#   firmware_scripts/uninstall.sh --dry-run              # print the plan only
#
# Keeps /etc/peephole (config) and /var/lib/peephole (gallery, outbox, models)
# unless --purge, which also removes them and the peephole user.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=firmware_scripts/common.sh
source "$here/common.sh"

purge=0
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
        --root) set_root "${2:?--root needs a folder}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --purge) purge=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
if [[ -z "$root" ]] && ((!dry_run)) && ((EUID != 0)); then
    die "run as root (sudo), or use --root DIR / --dry-run"
fi

if [[ -z "$root" ]] && ((!dry_run)); then
    systemctl disable --now peephole.service 2>/dev/null || true
else
    system_run systemctl disable --now peephole.service
fi
run rm -f "$root/etc/systemd/system/peephole.service"
system_run systemctl daemon-reload
run rm -rf "$root/opt/peephole"
if ((purge)); then
    run rm -rf "$root/etc/peephole" "$root/var/lib/peephole"
    system_run userdel peephole
    echo "done: peephole, its configuration, gallery, outbox and models removed"
else
    echo "done: kept $root/etc/peephole and $root/var/lib/peephole (--purge removes them)"
fi
