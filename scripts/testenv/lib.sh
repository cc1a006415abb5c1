# shellcheck shell=bash
# Shared helpers for scripts/testenv/*.sh (sourced, not executed).

die() { echo "${0##*/}: error: $*" >&2; exit 1; }

# pid_alive PID: true when PID exists and is not a zombie.
pid_alive() {
    local pid=$1 state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/stat ]] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$state" != Z && "$state" != X ]]
}

# stop_pid PID [TIMEOUT_SECONDS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local pid=$1 timeout=${2:-10} i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < timeout * 20; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.05
    done
    echo "${0##*/}: pid $pid did not stop after ${timeout}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do pid_alive "$pid" || return 0; sleep 0.05; done
    echo "${0##*/}: pid $pid still alive after SIGKILL" >&2
    return 1
}

# stop_pidfile FILE [TIMEOUT]: stop the process recorded in FILE (if any) and remove FILE.
stop_pidfile() {
    local f=$1 pid
    [[ -f "$f" ]] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ -n "$pid" ]]; then stop_pid "$pid" "${2:-10}"; fi
    rm -f "$f"
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT (or 0.0.0.0/[::]:PORT).
port_free() {
    ! python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
sys.exit(0)
PY
}

# wait_for_log FILE PATTERN PID WHAT [TIMEOUT]: wait until FILE contains PATTERN; fail if PID dies.
wait_for_log() {
    local file=$1 pat=$2 pid=$3 what=$4 timeout=${5:-20} i
    for ((i = 0; i < timeout * 20; i++)); do
        if grep -q -- "$pat" "$file" 2>/dev/null; then return 0; fi
        if ! pid_alive "$pid"; then
            echo "${0##*/}: $what exited during startup; last log lines ($file):" >&2
            tail -n 20 "$file" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "${0##*/}: $what not ready after ${timeout}s; last log lines ($file):" >&2
    tail -n 20 "$file" >&2
    exit 1
}

# cache_dir: print (and create) the download/build cache directory.
# $SPXPACK_TESTENV_CACHE, else /var/cache/spxpack-testenv when writable, else ~/.cache/spxpack-testenv.
cache_dir() {
    local d=${SPXPACK_TESTENV_CACHE:-}
    if [[ -z "$d" ]]; then
        if mkdir -p /var/cache/spxpack-testenv 2>/dev/null && [[ -w /var/cache/spxpack-testenv ]]; then
            d=/var/cache/spxpack-testenv
        else
            d=${XDG_CACHE_HOME:-$HOME/.cache}/spxpack-testenv
        fi
    fi
    mkdir -p "$d" || die "cannot create cache dir $d"
    (cd "$d" && pwd)
}

# shellcheck disable=SC2034 # used by the scripts that source this file
DEBIAN_MIRROR=${SPXPACK_TESTENV_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# shellcheck disable=SC2034
DEBIAN_SECURITY_MIRROR=${SPXPACK_TESTENV_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# shellcheck disable=SC2034
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# oci_blob FILE LAYOUT: store FILE as LAYOUT/blobs/sha256/<digest> (mode 644); print "sha256:<hex> <size>".
oci_blob() {
    local f=$1 layout=$2 hex size
    hex=$(sha256sum "$f" | cut -d' ' -f1)
    size=$(stat -c %s "$f")
    mkdir -p "$layout/blobs/sha256"
    mv -f "$f" "$layout/blobs/sha256/$hex"
    chmod 644 "$layout/blobs/sha256/$hex"
    echo "sha256:$hex $size"
}

# Deterministic layer tar of a rootfs dir on stdout (top-level entries without a "./" prefix).
# Extra tar options (e.g. --exclude=...) may follow the directory.
det_tar() {
    local root=$1; shift
    local entries=()
    mapfile -t entries < <(find "$root" -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort)
    LC_ALL=C tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        "$@" -C "$root" -cf - "${entries[@]}"
}

# write_image LAYOUT ARCH LAYER_TGZ DIFFID CONFIG_JSON_FRAGMENT CREATED_BY
# Writes config + manifest blobs for one single-layer image and prints the manifest descriptor JSON
# (compact, with platform). CONFIG_JSON_FRAGMENT is the "config" object (Env, Cmd, ...).
write_image() {
    local layout=$1 arch=$2 layer=$3 diffid=$4 cfg=$5 created_by=$6 variant=""
    [[ "$arch" == arm64 ]] && variant=v8
    local ldig lsize cdig csize mdig msize tmp
    read -r ldig lsize < <(oci_blob "$layer" "$layout")
    tmp=$(mktemp "$layout/.cfg.XXXXXX")
    jq -cjn --arg arch "$arch" --arg variant "$variant" --arg diffid "$diffid" --argjson cfg "$cfg" \
        --arg by "$created_by" '
        {created: "1970-01-01T00:00:00Z", architecture: $arch}
        + (if $variant != "" then {variant: $variant} else {} end)
        + {os: "linux", config: $cfg,
           rootfs: {type: "layers", diff_ids: [$diffid]},
           history: [{created: "1970-01-01T00:00:00Z", created_by: $by}]}' >"$tmp"
    read -r cdig csize < <(oci_blob "$tmp" "$layout")
    tmp=$(mktemp "$layout/.man.XXXXXX")
    jq -cjn --arg cdig "$cdig" --argjson csize "$csize" --arg ldig "$ldig" --argjson lsize "$lsize" '
        {schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
         config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cdig, size: $csize},
         layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ldig, size: $lsize}]}' >"$tmp"
    read -r mdig msize < <(oci_blob "$tmp" "$layout")
    jq -cjn --arg d "$mdig" --argjson s "$msize" --arg arch "$arch" --arg variant "$variant" '
        {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
         platform: ({architecture: $arch, os: "linux"} + (if $variant != "" then {variant: $variant} else {} end))}'
}

# write_index_layout LAYOUT AMD64_DESC ARM64_DESC: nested index + index.json with refs multi/amd64/arm64.
write_index_layout() {
    local layout=$1 amd=$2 arm=$3 tmp idig isize
    tmp=$(mktemp "$layout/.idx.XXXXXX")
    jq -cjn --argjson a "$amd" --argjson b "$arm" '
        {schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [$a, $b]}' >"$tmp"
    read -r idig isize < <(oci_blob "$tmp" "$layout")
    jq -cjn --arg d "$idig" --argjson s "$isize" --argjson a "$amd" --argjson b "$arm" '
        def ref($n): . + {annotations: {"org.opencontainers.image.ref.name": $n}};
        {schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [
          ({mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s} | ref("multi")),
          ($a | ref("amd64")),
          ($b | ref("arm64"))]}' >"$layout/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    chmod 644 "$layout/index.json" "$layout/oci-layout"
}

# umount_under DIR: lazily unmount every mount point at or below DIR (deepest first).
umount_under() {
    local dir mp
    dir=$(readlink -f "$1" 2>/dev/null) || return 0
    [[ -n "$dir" && "$dir" != / ]] || return 0
    # mountinfo field 5 is the mount point (octal-escaped spaces are fine for our paths)
    awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
        LC_ALL=C sort -r | while read -r mp; do
            umount -l "$mp" 2>/dev/null || umount "$mp" 2>/dev/null ||
                echo "${0##*/}: warning: cannot unmount $mp" >&2
        done
}

# pids_with_arg STRING COMM_PREFIX: PIDs whose command name (/proc/PID/comm) starts with
# COMM_PREFIX and whose command line contains STRING.
pids_with_arg() {
    local p cmd comm
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        comm=$( { cat "/proc/$p/comm"; } 2>/dev/null) || continue
        [[ "$comm" == "$2"* ]] || continue
        cmd=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
        [[ "$cmd" == *"$1"* ]] && echo "$p"
    done
    return 0
}
