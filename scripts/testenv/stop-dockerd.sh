#!/usr/bin/env bash
# stop-dockerd.sh DIR — stop the private dockerd started by start-dockerd.sh DIR (by PID), any
# containerd shims it left behind, and unmount what it left mounted under DIR. Idempotent.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
[[ -d "$1" ]] || exit 0
D=$(cd "$1" && pwd)

# Kill running containers first: on SIGTERM dockerd would give each one its 10 s stop timeout.
DOCKER=${SPXPACK_TEST_DOCKER:-/usr/bin/docker}
if [[ -S "$D/docker.sock" && -x "$DOCKER" ]] && pid_alive "$(cat "$D/docker.pid" 2>/dev/null || echo x)"; then
    ids=$(DOCKER_HOST=unix://$D/docker.sock timeout 5 "$DOCKER" ps -q 2>/dev/null || true)
    if [[ -n "$ids" ]]; then
        # shellcheck disable=SC2086
        DOCKER_HOST=unix://$D/docker.sock timeout 10 "$DOCKER" kill $ids >/dev/null 2>&1 || true
    fi
fi
stop_pidfile "$D/docker.pid" 20
stop_pidfile "$D/dockerd.launch-pid" 5
# shims / containerd started for this daemon carry its exec root in their arguments
for p in $(pids_with_arg "$D/exec/" containerd); do stop_pid "$p" 5 || true; done
umount_under "$D"
rm -f "$D/docker.sock"
if [[ -f "$D/.created-etc-docker-key-json" ]]; then
    rm -f /etc/docker/key.json "$D/.created-etc-docker-key-json"
fi
