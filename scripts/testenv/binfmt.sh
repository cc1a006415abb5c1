#!/usr/bin/env bash
# binfmt.sh on|off|status — register/unregister qemu-aarch64 in binfmt_misc (kernel-global, needs root).
# Uses the F (fix-binary) flag from qemu-user-static's /usr/lib/binfmt.d/qemu-aarch64.conf, so the
# handler also works inside chroots, containers and bwrap without qemu inside the rootfs.
set -euo pipefail

BM=/proc/sys/fs/binfmt_misc
CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
ENTRY=$BM/qemu-aarch64

die() { echo "binfmt.sh: $*" >&2; exit 1; }

case "${1:-}" in
on)
    [[ -f "$CONF" ]] || die "$CONF missing (install qemu-user-static: scripts/testenv/install.sh)"
    if [[ ! -f $BM/register ]]; then
        mount -t binfmt_misc binfmt_misc "$BM" || die "cannot mount binfmt_misc on $BM"
    fi
    if [[ -e "$ENTRY" ]]; then
        if grep -qx disabled "$ENTRY"; then echo 1 >"$ENTRY"; fi
    else
        # The .conf may contain comments; register the first non-comment line.
        line=$(grep -v '^[[:space:]]*\(#\|$\)' "$CONF" | head -n1)
        printf '%s\n' "$line" >$BM/register || die "registering qemu-aarch64 failed"
    fi
    grep -qx enabled "$ENTRY" || die "qemu-aarch64 registered but not enabled: $(cat "$ENTRY")"
    grep -q '^flags:.*F' "$ENTRY" || echo "binfmt.sh: warning: qemu-aarch64 registered without F flag: $(grep ^flags "$ENTRY")" >&2
    ;;
off)
    if [[ -e "$ENTRY" ]]; then echo -1 >"$ENTRY"; fi
    ;;
status)
    if [[ -e "$ENTRY" ]]; then cat "$ENTRY"; else echo "qemu-aarch64: not registered"; exit 1; fi
    ;;
*)
    echo "usage: $0 on|off|status" >&2; exit 2 ;;
esac
