#!/usr/bin/env bash
# start-registry.sh MODE DIR PORT [TOKEN_PORT]
#
# Starts a CNCF distribution registry (Debian docker-registry 2.8) on 127.0.0.1:PORT with its own
# config DIR/config.yml (never the packaged /etc/docker/registry/config.yml), storage in DIR/data.
#
#   MODE plain      HTTP, no auth
#   MODE basic      HTTP + htpasswd basic auth
#   MODE tls        HTTPS (CA + leaf certificate), no auth
#   MODE tls-basic  HTTPS + htpasswd basic auth
#   MODE token      HTTP + bearer tokens from token-server.py on 127.0.0.1:TOKEN_PORT
#                   (default $SPXPACK_TEST_PORT_TOKEN_SERVER or 15099), service test-registry,
#                   issuer test-issuer
#
# User/password: $SPXPACK_TEST_REGISTRY_USER / $SPXPACK_TEST_REGISTRY_PASS (testuser / testpass).
# Files: DIR/pid, DIR/registry.log, DIR/ca.pem (TLS: the CA clients must trust), DIR/certs/ca.crt
# (skopeo --cert-dir form), DIR/htpasswd; token mode also DIR/token-server.pid,
# DIR/token-server.log, DIR/token-key.pem, DIR/token-cert.pem.
# A registry (and token server) already recorded in DIR is stopped first, so reruns are clean.
# The storage in DIR/data is kept unless SPXPACK_TESTENV_FRESH_DATA=1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# -ge 3 && $# -le 4 ]] || { echo "usage: $0 plain|basic|tls|tls-basic|token DIR PORT [TOKEN_PORT]" >&2; exit 2; }
MODE=$1; DIR=$2; PORT=$3
TOKEN_PORT=${4:-${SPXPACK_TEST_PORT_TOKEN_SERVER:-15099}}
USER_=${SPXPACK_TEST_REGISTRY_USER:-testuser}
PASS_=${SPXPACK_TEST_REGISTRY_PASS:-testpass}
case "$MODE" in plain|basic|tls|tls-basic|token) ;; *) die "unknown MODE '$MODE'" ;; esac
command -v docker-registry >/dev/null || die "docker-registry not installed (run scripts/testenv/install.sh)"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

stop_pidfile "$DIR/pid"
stop_pidfile "$DIR/token-server.pid"
if [[ "${SPXPACK_TESTENV_FRESH_DATA:-0}" == 1 ]]; then rm -rf "$DIR/data"; fi
mkdir -p "$DIR/data"
port_free "$PORT" || die "port 127.0.0.1:$PORT is already in use"

# ---- credentials / certificates (reused while valid for another day) ----
need_htpasswd() {
    if [[ ! -s "$DIR/htpasswd" ]] || ! htpasswd -vb "$DIR/htpasswd" "$USER_" "$PASS_" >/dev/null 2>&1; then
        htpasswd -Bbn "$USER_" "$PASS_" >"$DIR/htpasswd.tmp" 2>/dev/null || die "htpasswd failed (install apache2-utils)"
        mv "$DIR/htpasswd.tmp" "$DIR/htpasswd"
    fi
}
cert_valid() { [[ -s "$1" ]] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1; }
need_tls() {
    if cert_valid "$DIR/ca.pem" && cert_valid "$DIR/cert.pem" && [[ -s "$DIR/key.pem" ]] &&
        openssl verify -CAfile "$DIR/ca.pem" "$DIR/cert.pem" >/dev/null 2>&1; then
        :
    else
        # CA + leaf, NOT a single self-signed cert: rustls/webpki rejects a CA:TRUE end-entity
        # certificate (CaUsedAsEndEntity).
        local t; t=$(mktemp -d "$DIR/.certs.XXXXXX")
        (
            cd "$t"
            openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=spxpack-test-ca \
                -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca-key.pem -out ca.pem
            openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr
            printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
                'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >leaf.ext
            openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
                -extfile leaf.ext -out cert.pem
        ) >"$DIR/openssl.log" 2>&1 || { cat "$DIR/openssl.log" >&2; die "certificate generation failed"; }
        mv "$t/ca.pem" "$t/ca-key.pem" "$t/key.pem" "$t/cert.pem" "$DIR/"
        rm -rf "$t" "$DIR/openssl.log"
    fi
    mkdir -p "$DIR/certs"
    cp "$DIR/ca.pem" "$DIR/certs/ca.crt"     # skopeo/containers --cert-dir layout
}
need_token_cert() {
    if ! cert_valid "$DIR/token-cert.pem" || [[ ! -s "$DIR/token-key.pem" ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=token-signer \
            -keyout "$DIR/token-key.pem" -out "$DIR/token-cert.pem" >"$DIR/openssl.log" 2>&1 ||
            { cat "$DIR/openssl.log" >&2; die "token signer certificate generation failed"; }
        rm -f "$DIR/openssl.log"
    fi
}

# ---- config ----
{
    cat <<YAML
version: 0.1
log:
  level: info
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: $DIR/data}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
  maintenance:
    uploadpurging: {enabled: false}
http:
  addr: 127.0.0.1:$PORT
  secret: spxpack-testenv-secret
  headers:
    X-Content-Type-Options: [nosniff]
YAML
    case "$MODE" in tls|tls-basic)
        need_tls
        echo "  tls: {certificate: $DIR/cert.pem, key: $DIR/key.pem}"
    esac
    case "$MODE" in basic|tls-basic)
        need_htpasswd
        printf 'auth:\n  htpasswd: {realm: test-realm, path: %s/htpasswd}\n' "$DIR"
    esac
    if [[ "$MODE" == token ]]; then
        need_token_cert
        cat <<YAML
auth:
  token:
    realm: http://127.0.0.1:$TOKEN_PORT/token
    service: test-registry
    issuer: test-issuer
    rootcertbundle: $DIR/token-cert.pem
YAML
    fi
} >"$DIR/config.yml.tmp"
mv "$DIR/config.yml.tmp" "$DIR/config.yml"

# ---- token server ----
if [[ "$MODE" == token ]]; then
    port_free "$TOKEN_PORT" || die "token server port 127.0.0.1:$TOKEN_PORT is already in use"
    : >"$DIR/token-server.log"
    setsid python3 "$HERE/token-server.py" "$TOKEN_PORT" "$DIR/token-key.pem" "$DIR/token-cert.pem" \
        "$USER_:$PASS_" "$DIR/token-requests.log" </dev/null >>"$DIR/token-server.log" 2>&1 &
    echo $! >"$DIR/token-server.pid"
    wait_for_log "$DIR/token-server.log" "listening on" "$(cat "$DIR/token-server.pid")" "token server"
fi

# ---- registry ----
: >"$DIR/registry.log"
setsid docker-registry serve "$DIR/config.yml" </dev/null >>"$DIR/registry.log" 2>&1 &
echo $! >"$DIR/pid"
wait_for_log "$DIR/registry.log" "listening on" "$(cat "$DIR/pid")" "registry ($MODE, port $PORT)"
cat "$DIR/pid"
