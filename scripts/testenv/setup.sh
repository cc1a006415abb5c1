#!/usr/bin/env bash
# setup.sh [--python] — bring up spxpack's integration-test environment and write $DIR/env.sh.
#
#   1. install.sh (apt; skipped when everything is installed)
#   2. binfmt.sh on (qemu-aarch64)
#   3. private dockerd (start-dockerd.sh $DIR/dockerd), registries plain / tls-basic / token
#      (+ token server), and the busybox OCI fixture — in parallel
#   4. skopeo pushes of busybox:{multi,arm64,amd64} to all three registries and
#      busybox:multi-v2s2 / busybox:arm64-v2s2 (Docker v2s2) to the plain one
#   5. --python (or SPXPACK_TEST_PYTHON=1): python:3.11-slim stand-in (make-python-oci.sh),
#      pushed as python:3.11-slim{,-arm64,-amd64} to the plain registry
#   6. $DIR/env.sh with the SPXPACK_TEST_* contract (see README.md)
#
# $DIR = ${SPXPACK_TESTENV_DIR:-/tmp/spxpack-testenv}. Ports (127.0.0.1 only):
#   SPXPACK_TEST_PORT_PLAIN=15000  SPXPACK_TEST_PORT_TLS=15003  SPXPACK_TEST_PORT_TOKEN=15004
#   SPXPACK_TEST_PORT_TOKEN_SERVER=15099
# Idempotent: services recorded in $DIR are stopped and restarted cleanly, registry storage and
# the docker image store start empty, fixtures are rebuilt (byte-identical).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

PYTHON=${SPXPACK_TEST_PYTHON:-0}
for arg in "$@"; do
    case "$arg" in
    --python) PYTHON=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument '$arg' (usage: $0 [--python])" ;;
    esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root (dockerd, binfmt_misc, apt)"

DIR=${SPXPACK_TESTENV_DIR:-/tmp/spxpack-testenv}
P_PLAIN=${SPXPACK_TEST_PORT_PLAIN:-15000}
P_TLS=${SPXPACK_TEST_PORT_TLS:-15003}
P_TOKEN=${SPXPACK_TEST_PORT_TOKEN:-15004}
P_TOKSRV=${SPXPACK_TEST_PORT_TOKEN_SERVER:-15099}
USER_=${SPXPACK_TEST_REGISTRY_USER:-testuser}
PASS_=${SPXPACK_TEST_REGISTRY_PASS:-testpass}
export SPXPACK_TEST_REGISTRY_USER=$USER_ SPXPACK_TEST_REGISTRY_PASS=$PASS_

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

"$HERE/install.sh"
T_INSTALL=$(now)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
exec 9>"$DIR/.lock"
flock -w 600 9 || die "another setup/teardown holds $DIR/.lock"
rm -f "$DIR/env.sh"
LOGS=$DIR/logs
mkdir -p "$LOGS"

# binfmt: remember whether we registered / mounted it, so teardown only undoes our own changes
if [[ ! -f /proc/sys/fs/binfmt_misc/register ]]; then touch "$DIR/.binfmt-mounted-by-setup"; fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then touch "$DIR/.binfmt-registered-by-setup"; fi
"$HERE/binfmt.sh" on

# ---- services and fixtures, in parallel ----
declare -A JOBS
bg() { # bg NAME CMD... — run in background, output to $LOGS/NAME.log, fd 9 (lock) closed
    local name=$1; shift
    "$@" >"$LOGS/$name.log" 2>&1 9>&- &
    JOBS[$name]=$!
}
join_all() {
    local name failed=()
    for name in "${!JOBS[@]}"; do
        if ! wait "${JOBS[$name]}"; then failed+=("$name"); fi
    done
    JOBS=()
    if [[ ${#failed[@]} -ne 0 ]]; then
        for name in "${failed[@]}"; do
            echo "setup.sh: step '$name' failed; its output ($LOGS/$name.log):" >&2
            sed 's/^/    /' "$LOGS/$name.log" >&2
        done
        exit 1
    fi
}

FIX=$DIR/fixtures
export SPXPACK_TESTENV_FRESH_DATA=1
bg dockerd "$HERE/start-dockerd.sh" "$DIR/dockerd"
bg registry-plain "$HERE/start-registry.sh" plain "$DIR/registry-plain" "$P_PLAIN"
bg registry-tls "$HERE/start-registry.sh" tls-basic "$DIR/registry-tls" "$P_TLS"
bg registry-token "$HERE/start-registry.sh" token "$DIR/registry-token" "$P_TOKEN" "$P_TOKSRV"
bg busybox "$HERE/make-busybox-oci.sh" "$FIX/busybox-oci"
if [[ "$PYTHON" == 1 ]]; then bg python "$HERE/make-python-oci.sh" "$FIX/python-oci"; fi
join_all
T_SERVICES=$(now)

# ---- pushes ----
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$DIR/policy.json"
SK=(skopeo --policy "$DIR/policy.json" --registries-conf /dev/null copy -q --retry-times 2)
PLAIN=127.0.0.1:$P_PLAIN TLS=127.0.0.1:$P_TLS TOKEN=127.0.0.1:$P_TOKEN
BB=$FIX/busybox-oci
push_all() { # push_all REGISTRY DEST-FLAGS...
    local reg=$1; shift
    "${SK[@]}" "$@" --all "oci:$BB:multi" "docker://$reg/busybox:multi"
    "${SK[@]}" "$@" "oci:$BB:arm64" "docker://$reg/busybox:arm64"
    "${SK[@]}" "$@" "oci:$BB:amd64" "docker://$reg/busybox:amd64"
}
push_plain() {
    push_all "$PLAIN" --dest-tls-verify=false
    "${SK[@]}" --dest-tls-verify=false --all --format v2s2 --digestfile "$DIR/busybox-multi-v2s2.digest" \
        "oci:$BB:multi" "docker://$PLAIN/busybox:multi-v2s2"
    "${SK[@]}" --dest-tls-verify=false --format v2s2 --digestfile "$DIR/busybox-arm64-v2s2.digest" \
        "oci:$BB:arm64" "docker://$PLAIN/busybox:arm64-v2s2"
    if [[ "$PYTHON" == 1 ]]; then
        local PY=$FIX/python-oci
        "${SK[@]}" --dest-tls-verify=false --all "oci:$PY:multi" "docker://$PLAIN/python:3.11-slim"
        "${SK[@]}" --dest-tls-verify=false "oci:$PY:arm64" "docker://$PLAIN/python:3.11-slim-arm64"
        "${SK[@]}" --dest-tls-verify=false "oci:$PY:amd64" "docker://$PLAIN/python:3.11-slim-amd64"
    fi
}
bg push-plain push_plain
bg push-tls push_all "$TLS" --dest-cert-dir "$DIR/registry-tls/certs" --dest-creds "$USER_:$PASS_"
bg push-token push_all "$TOKEN" --dest-tls-verify=false --dest-creds "$USER_:$PASS_"
join_all
T_PUSH=$(now)

# ---- env.sh ----
ref_digest() { jq -r --arg r "$2" '.manifests[] | select(.annotations."org.opencontainers.image.ref.name" == $r) | .digest' "$1/index.json"; }
mkdir -p "$DIR/docker-config"
[[ -s "$DIR/docker-config/config.json" ]] || echo '{}' >"$DIR/docker-config/config.json"
{
    echo "# Generated by scripts/testenv/setup.sh — source it before running the tests."
    e() { printf 'export %s=%q\n' "$1" "$2"; }
    e SPXPACK_TEST_ENV 1
    e SPXPACK_TEST_ENV_DIR "$DIR"
    e SPXPACK_TEST_REGISTRY_PLAIN "$PLAIN"
    e SPXPACK_TEST_REGISTRY_PLAIN_DATA "$DIR/registry-plain/data"
    e SPXPACK_TEST_REGISTRY_TLS "$TLS"
    e SPXPACK_TEST_REGISTRY_TLS_CA "$DIR/registry-tls/ca.pem"
    e SPXPACK_TEST_REGISTRY_TLS_CERT_DIR "$DIR/registry-tls/certs"
    e SPXPACK_TEST_REGISTRY_TLS_DATA "$DIR/registry-tls/data"
    e SPXPACK_TEST_REGISTRY_USER "$USER_"
    e SPXPACK_TEST_REGISTRY_PASS "$PASS_"
    e SPXPACK_TEST_REGISTRY_TOKEN "$TOKEN"
    e SPXPACK_TEST_REGISTRY_TOKEN_DATA "$DIR/registry-token/data"
    e SPXPACK_TEST_TOKEN_SERVER "127.0.0.1:$P_TOKSRV"
    e SPXPACK_TEST_TOKEN_SERVER_LOG "$DIR/registry-token/token-requests.log"
    e SPXPACK_TEST_FIXTURES "$FIX"
    e SPXPACK_TEST_BUSYBOX_OCI "$BB"
    e SPXPACK_TEST_BUSYBOX_ROOTFS_AMD64 "$FIX/busybox-rootfs-amd64"
    e SPXPACK_TEST_BUSYBOX_ROOTFS_ARM64 "$FIX/busybox-rootfs-arm64"
    e SPXPACK_TEST_BUSYBOX_MULTI_DIGEST "$(ref_digest "$BB" multi)"
    e SPXPACK_TEST_BUSYBOX_AMD64_DIGEST "$(ref_digest "$BB" amd64)"
    e SPXPACK_TEST_BUSYBOX_ARM64_DIGEST "$(ref_digest "$BB" arm64)"
    e SPXPACK_TEST_BUSYBOX_MULTI_V2S2_DIGEST "$(cat "$DIR/busybox-multi-v2s2.digest")"
    e SPXPACK_TEST_BUSYBOX_ARM64_V2S2_DIGEST "$(cat "$DIR/busybox-arm64-v2s2.digest")"
    e SPXPACK_TEST_BINFMT_AARCH64 1
    e SPXPACK_TEST_DOCKER /usr/bin/docker
    e DOCKER_HOST "$(cat "$DIR/dockerd/docker-host")"
    e DOCKER_CONFIG "$DIR/docker-config"
    if [[ "$PYTHON" == 1 ]]; then
        e SPXPACK_TEST_PYTHON 1
        e SPXPACK_TEST_PYTHON_OCI "$FIX/python-oci"
        e SPXPACK_TEST_PYTHON_IMAGE "$PLAIN/python:3.11-slim"
        e SPXPACK_TEST_PYTHON_ROOTFS_AMD64 "$(sed -n 's/^PYTHON_ROOTFS_AMD64=//p' "$LOGS/python.log")"
        e SPXPACK_TEST_PYTHON_ROOTFS_ARM64 "$(sed -n 's/^PYTHON_ROOTFS_ARM64=//p' "$LOGS/python.log")"
    fi
} >"$DIR/env.sh.tmp"
mv "$DIR/env.sh.tmp" "$DIR/env.sh"
T_END=$(now)

echo "testenv ready in $(secs "$T0" "$T_END")s (install $(secs "$T0" "$T_INSTALL")s," \
    "services+fixtures $(secs "$T_INSTALL" "$T_SERVICES")s, push $(secs "$T_SERVICES" "$T_PUSH")s):" \
    "source $DIR/env.sh"
