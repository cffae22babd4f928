#!/bin/sh
# Installs meshdns as the local resolver of a VM, or removes it and puts back what was there.
#
#   sudo deploy/vm/install.sh install [BINARY]   # BINARY: bin/coredns by default
#   sudo deploy/vm/install.sh uninstall
#
# install puts the binary in /usr/local/bin/meshdns, the unit in /etc/systemd/system, the Corefile in
# /etc/meshdns (an existing one is kept), and points the system's resolver at 127.0.0.1: with
# systemd-resolved through a drop-in (resolved then sends every name to meshdns), otherwise by
# writing /etc/resolv.conf (search and options lines kept). The resolvers used before become
# meshdns's upstreams (/etc/meshdns/upstream.conf). Every file and directory it creates or replaces
# is recorded; uninstall undoes exactly that, so the system is as it was, byte for byte.
#
# ROOT (default /) installs into another root, for images and tests; systemctl runs only when ROOT
# is /.
set -eu

ROOT=${ROOT:-/}
ROOT=${ROOT%/}
STATE=$ROOT/var/lib/meshdns-install
MANIFEST=$STATE/manifest
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }

systemctl_if_live() {
    if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
        systemctl "$@"
    fi
}

# mkdirs DIR: creates DIR and its missing parents, recording each one created.
mkdirs() {
    [ -d "$1" ] && return 0
    mkdirs "$(dirname "$1")"
    mkdir "$1"
    echo "dir $1" >>"$MANIFEST"
}

# backup PATH: keeps PATH (file or symlink) as it is, to be put back by uninstall.
backup() {
    [ -e "$1" ] || [ -L "$1" ] || return 0
    n=$(wc -l <"$MANIFEST")
    cp -P -p "$1" "$STATE/backup.$n"
    echo "backup $1 $STATE/backup.$n" >>"$MANIFEST"
    rm -f "$1"
}

# put SRC DST MODE: installs a file, recording it (and keeping what it replaces).
put() {
    mkdirs "$(dirname "$2")"
    backup "$2"
    cp "$1" "$2"
    chmod "$3" "$2"
    echo "file $2" >>"$MANIFEST"
}

# nameservers FILE: the nameserver lines of a resolv.conf, minus our own address.
nameservers() {
    [ -f "$1" ] || return 0
    grep -E '^[[:space:]]*nameserver[[:space:]]' "$1" | grep -vE '[[:space:]](127\.0\.0\.1|::1)[[:space:]]*$' || true
}

install_meshdns() {
    binary=${1:-bin/coredns}
    [ -x "$binary" ] || die "no executable at $binary: build it first (make build)"
    [ -e "$MANIFEST" ] && die "already installed (see $MANIFEST); uninstall first"
    # The state directory's missing parents are recorded once the manifest exists.
    created=
    for d in "$ROOT/var" "$ROOT/var/lib"; do
        [ -d "$d" ] || { mkdir "$d" && created="$created $d"; }
    done
    mkdir "$STATE"
    : >"$MANIFEST"
    for d in $created; do echo "dir $d" >>"$MANIFEST"; done
    echo "state $STATE" >>"$MANIFEST"

    put "$binary" "$ROOT/usr/local/bin/meshdns" 0755
    put "$HERE/meshdns.service" "$ROOT/etc/systemd/system/meshdns.service" 0644
    if [ ! -e "$ROOT/etc/meshdns/Corefile" ]; then
        put "$HERE/Corefile" "$ROOT/etc/meshdns/Corefile" 0644
    fi

    tmp=$STATE/upstream.tmp
    stub=$(readlink "$ROOT/etc/resolv.conf" 2>/dev/null || true)
    case "$stub" in
    *systemd/resolve/*)
        # systemd-resolved: its uplinks become ours, and it sends everything to us.
        nameservers "$ROOT/run/systemd/resolve/resolv.conf" >"$tmp"
        printf '[Resolve]\nDNS=127.0.0.1\nDomains=~.\n' >"$STATE/resolved.conf"
        put "$STATE/resolved.conf" "$ROOT/etc/systemd/resolved.conf.d/meshdns.conf" 0644
        rm -f "$STATE/resolved.conf"
        ;;
    *)
        nameservers "$ROOT/etc/resolv.conf" >"$tmp"
        {
            echo "# meshdns (deploy/vm/install.sh uninstall puts the previous file back)"
            echo "nameserver 127.0.0.1"
            [ -f "$ROOT/etc/resolv.conf" ] && grep -E '^[[:space:]]*(search|domain|options)[[:space:]]' "$ROOT/etc/resolv.conf" || true
        } >"$STATE/resolv.conf"
        put "$STATE/resolv.conf" "$ROOT/etc/resolv.conf" 0644
        rm -f "$STATE/resolv.conf"
        ;;
    esac
    [ -s "$tmp" ] || die "no upstream nameserver found for the names outside the mesh"
    put "$tmp" "$ROOT/etc/meshdns/upstream.conf" 0644
    rm -f "$tmp"

    systemctl_if_live daemon-reload
    systemctl_if_live enable --now meshdns.service
    case "$stub" in *systemd/resolve/*) systemctl_if_live restart systemd-resolved.service ;; esac
    echo "meshdns installed; the system resolver now asks 127.0.0.1"
}

uninstall_meshdns() {
    [ -e "$MANIFEST" ] || die "not installed (no $MANIFEST)"
    systemctl_if_live disable --now meshdns.service || true
    # Undo in reverse order.
    tac "$MANIFEST" | while read -r kind path saved; do
        case "$kind" in
        file) rm -f "$path" ;;
        backup) cp -P -p "$saved" "$path" && rm -f "$saved" ;;
        dir) rmdir "$path" ;;
        state) rm -f "$MANIFEST" && rmdir "$path" ;;
        esac
    done
    systemctl_if_live daemon-reload
    if [ -z "$ROOT" ] && systemctl is-active --quiet systemd-resolved.service 2>/dev/null; then
        systemctl restart systemd-resolved.service
    fi
    echo "meshdns removed; the resolver configuration is as before"
}

case "${1:-}" in
install) shift; install_meshdns "$@" ;;
uninstall) uninstall_meshdns ;;
*) echo "usage: $0 install [BINARY] | uninstall" >&2; exit 2 ;;
esac
