#!/usr/bin/env bash
# teardown.sh [--purge] — stop everything setup.sh started (by PID, from the files in $DIR),
# unmount leftovers under $DIR, unregister qemu-aarch64 / unmount binfmt_misc only if setup.sh did
# it. --purge also deletes $DIR (otherwise logs stay for debugging). Idempotent.
# $DIR = ${SPXPACK_TESTENV_DIR:-/tmp/spxpack-testenv}
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

PURGE=0
for arg in "$@"; do
    case "$arg" in
    --purge) PURGE=1 ;;
    *) die "unknown argument '$arg' (usage: $0 [--purge])" ;;
    esac
done
DIR=${SPXPACK_TESTENV_DIR:-/tmp/spxpack-testenv}
[[ -d "$DIR" ]] || exit 0
DIR=$(cd "$DIR" && pwd)
exec 9>"$DIR/.lock"
flock -w 600 9 || die "another setup/teardown holds $DIR/.lock"

rm -f "$DIR/env.sh"
rc=0
for d in "$DIR"/registry-*; do
    [[ -d "$d" ]] || continue
    stop_pidfile "$d/pid" || rc=1
    stop_pidfile "$d/token-server.pid" || rc=1
done
if [[ -d "$DIR/dockerd" ]]; then "$HERE/stop-dockerd.sh" "$DIR/dockerd" 9>&- || rc=1; fi
umount_under "$DIR"

if [[ -f "$DIR/.binfmt-registered-by-setup" ]]; then
    "$HERE/binfmt.sh" off || rc=1
    rm -f "$DIR/.binfmt-registered-by-setup"
fi
if [[ -f "$DIR/.binfmt-mounted-by-setup" ]]; then
    # only when no other handler is left registered
    if [[ -f /proc/sys/fs/binfmt_misc/register ]] &&
        [[ -z "$(find /proc/sys/fs/binfmt_misc -mindepth 1 -maxdepth 1 ! -name register ! -name status -print -quit)" ]]; then
        umount /proc/sys/fs/binfmt_misc || rc=1
    fi
    rm -f "$DIR/.binfmt-mounted-by-setup"
fi

if [[ "$PURGE" == 1 ]]; then
    exec 9>&-
    rm -rf "$DIR"
fi
exit $rc
