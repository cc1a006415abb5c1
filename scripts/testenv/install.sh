#!/usr/bin/env bash
# Install every Debian package the spxpack test environment needs.
# Idempotent: skips apt entirely when all packages are already installed.
# Uses --no-upgrade so preinstalled jq/openssl/curl/ca-certificates are left alone.
set -euo pipefail

PACKAGES=(
    docker.io containerd            # Docker 20.10 engine (runc, tini come along)
    docker-registry                 # CNCF distribution 2.8
    skopeo umoci                    # image copy / OCI tools
    jq pigz zstd openssl curl python3
    qemu-user-static                # qemu-aarch64 for binfmt
    proot bubblewrap                # rootless sandboxes
    apache2-utils                   # htpasswd (bcrypt)
    docker-compose                  # compose v1 against the private dockerd
    mmdebstrap arch-test            # python stand-in rootfs builder
)
# Optional extra packages (e.g. SPXPACK_TESTENV_EXTRA_PACKAGES="podman buildah").
# Appended after docker.io, so runc is already present and crun is not pulled in.
if [[ -n "${SPXPACK_TESTENV_EXTRA_PACKAGES:-}" ]]; then
    read -r -a extra <<<"$SPXPACK_TESTENV_EXTRA_PACKAGES"
    PACKAGES+=("${extra[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ "$status" == installed ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/spxpack-install.XXXXXX.log)
run() {
    if ! "$@" >>"$log" 2>&1; then
        echo "install.sh: command failed: $*" >&2
        tail -n 40 "$log" >&2
        echo "install.sh: full log: $log" >&2
        exit 1
    fi
}
run apt-get -o DPkg::Lock::Timeout=600 update
run apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends --no-upgrade "${PACKAGES[@]}"

still=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ "$status" == installed ]] || still+=("$p")
done
if [[ ${#still[@]} -ne 0 ]]; then
    echo "install.sh: packages still not installed: ${still[*]} (log: $log)" >&2
    exit 1
fi
rm -f "$log"
