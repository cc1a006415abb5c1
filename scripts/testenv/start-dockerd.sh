#!/usr/bin/env bash
# start-dockerd.sh DIR
#
# Starts a private Docker 20.10 daemon (Debian docker.io): vfs storage, no iptables, no bridge,
# its own data root, exec root, pidfile, socket and daemon.json, all under DIR:
#   DIR/docker.sock  DIR/docker.pid  DIR/dockerd.log  DIR/root  DIR/exec  DIR/daemon.json
#   DIR/docker-host  (contains the DOCKER_HOST value)
# Waits until `/usr/bin/docker version` answers, then prints DOCKER_HOST=unix://DIR/docker.sock.
# A daemon recorded in DIR is stopped first, and its data root is wiped (clean image store) unless
# SPXPACK_TESTENV_KEEP_DOCKER_DATA=1.
# Containers have no network: `docker run` needs --network none or --network host.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DOCKERD=${SPXPACK_TESTENV_DOCKERD:-/usr/sbin/dockerd}
DOCKER=${SPXPACK_TEST_DOCKER:-/usr/bin/docker}
[[ -x "$DOCKERD" ]] || die "$DOCKERD not found (run scripts/testenv/install.sh)"
[[ -x "$DOCKER" ]] || die "$DOCKER not found (run scripts/testenv/install.sh)"
[[ $(id -u) -eq 0 ]] || die "dockerd needs root"

mkdir -p "$1"
D=$(cd "$1" && pwd)
SOCK=$D/docker.sock
# unix socket paths are limited to 107 bytes; containerd's lives deepest
(( ${#D} + 40 < 108 )) || die "DIR path too long for unix sockets: $D"

"$HERE/stop-dockerd.sh" "$D"
if [[ "${SPXPACK_TESTENV_KEEP_DOCKER_DATA:-0}" != 1 ]]; then rm -rf "$D/root"; fi
mkdir -p "$D/root" "$D/exec"
echo '{}' >"$D/daemon.json"
[[ -e /etc/docker/key.json ]] || touch "$D/.created-etc-docker-key-json"

: >"$D/dockerd.log"
setsid "$DOCKERD" --config-file "$D/daemon.json" \
    --storage-driver vfs --iptables=false --ip6tables=false --bridge=none --ip-forward=false \
    --ip-masq=false --userland-proxy=false --shutdown-timeout 2 \
    --data-root "$D/root" --exec-root "$D/exec" --pidfile "$D/docker.pid" \
    -H "unix://$SOCK" </dev/null >>"$D/dockerd.log" 2>&1 &
pid=$!
echo "$pid" >"$D/dockerd.launch-pid"

export DOCKER_HOST=unix://$SOCK
for ((i = 0; i < 600; i++)); do
    if [[ -S "$SOCK" ]] && "$DOCKER" version >/dev/null 2>&1; then break; fi
    if ! pid_alive "$pid"; then
        echo "start-dockerd.sh: dockerd exited during startup; last log lines ($D/dockerd.log):" >&2
        tail -n 30 "$D/dockerd.log" >&2
        exit 1
    fi
    sleep 0.05
done
if ! "$DOCKER" version >/dev/null 2>&1; then
    echo "start-dockerd.sh: dockerd not ready after 30s; last log lines:" >&2
    tail -n 30 "$D/dockerd.log" >&2
    exit 1
fi
echo "$DOCKER_HOST" >"$D/docker-host"
echo "DOCKER_HOST=$DOCKER_HOST"
