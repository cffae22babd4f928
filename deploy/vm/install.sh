#!/bin/sh
# Installs meshdns as the local resolver of a VM, or removes it and puts back what was there.
#
#   sudo deploy/vm/install.sh install [BINARY]              # BINARY: bin/coredns by default
#   sudo deploy/vm/install.sh install --istio DIR [BINARY]  # DIR: istioctl's files, see below
#   deploy/vm/install.sh show --istio DIR                   # prints the Corefile install would write
#   sudo deploy/vm/install.sh uninstall
#
# install puts the binary in /usr/local/bin/meshdns, the unit in /etc/systemd/system, the Corefile in
# /etc/meshdns (an existing one is kept, unless --istio), and points the system's resolver at 127.0.0.1: with
# systemd-resolved through a drop-in (resolved then sends every name to meshdns), otherwise by
# writing /etc/resolv.conf (search and options lines kept). The resolvers used before become
# meshdns's upstreams (/etc/meshdns/upstream.conf). Every file and directory it creates or replaces
# is recorded; uninstall undoes exactly that, so the system is as it was, byte for byte.
#
# --istio DIR takes what `istioctl x workload entry configure -f workloadgroup.yaml -o DIR` wrote.
# The Corefile is written from mesh.yaml (defaultConfig.discoveryAddress), hosts (istiod's address
# for that name, pinned in the Corefile with the name kept as the TLS server name, so /etc/hosts is
# left alone) and cluster.env (namespace, service account, cluster, network, the VM's address: the
# node istio-agent would be). root-cert.pem and istio-token go where istio-agent reads them:
# /etc/certs/root-cert.pem (a credential of the unit) and /var/run/secrets/tokens/istio-token, which
# the Corefile names and meshdns reads afresh for every stream: replace it when istioctl renews it,
# in place or by rename; no restart.
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

# Where istio-agent reads its root certificate and token on a VM; the unit and the Corefile name them.
ISTIO_ROOT_CERT=/etc/certs/root-cert.pem
ISTIO_TOKEN=/var/run/secrets/tokens/istio-token

# envvalue FILE KEY: the value of KEY in istioctl's cluster.env, unquoted (istioctl writes
# KEY=VALUE lines, VALUE shell-quoted when it needs to be: 'it'"'"'s'). Empty when absent.
envvalue() {
    line=$(grep -E "^$2=" "$1" | tail -n 1) || return 0
    v=${line#"$2"=}
    case "$v" in
    \'*\') v=${v#\'}; v=${v%\'}; v=$(printf '%s' "$v" | sed "s/'\"'\"'/'/g") ;;
    esac
    printf '%s' "$v"
}

# istio_corefile DIR: the Corefile for the files istioctl wrote to DIR, on stdout. Every value that
# cannot be found is named, all at once, on stderr.
istio_corefile() {
    [ -d "$1" ] || die "--istio $1: not a directory (the -o of istioctl x workload entry configure)"
    dir=$(cd "$1" && pwd)
    missing=
    for f in cluster.env mesh.yaml hosts root-cert.pem istio-token; do
        [ -f "$dir/$f" ] || missing="$missing
  - $dir/$f: no such file"
    done
    if [ -f "$dir/root-cert.pem" ] && ! grep -q 'BEGIN CERTIFICATE' "$dir/root-cert.pem"; then
        missing="$missing
  - a PEM certificate in $dir/root-cert.pem (istioctl copies ConfigMap istio-ca-root-cert of the WorkloadGroup's namespace)"
    fi
    if [ -f "$dir/istio-token" ] && [ ! -s "$dir/istio-token" ]; then
        missing="$missing
  - a token in $dir/istio-token (it is empty)"
    fi

    discovery='' host='' port='' ip=''
    if [ -f "$dir/mesh.yaml" ]; then
        # istioctl writes {defaultConfig: {discoveryAddress: ..., proxyMetadata: {...}}}, two spaces a level.
        discovery=$(sed -n 's/^  discoveryAddress:[[:space:]]*//p' "$dir/mesh.yaml" | tr -d "\"'" | head -n 1)
        case "$discovery" in
        "") missing="$missing
  - defaultConfig.discoveryAddress in $dir/mesh.yaml (istiod's host:port, from the mesh config: ConfigMap istio in istio-system)" ;;
        \[*\]:*) host=${discovery%]:*}; host=${host#[}; port=${discovery##*]:} ;;
        *:*) host=${discovery%:*}; port=${discovery##*:} ;;
        *) missing="$missing
  - defaultConfig.discoveryAddress in $dir/mesh.yaml as host:port (it is $discovery)" ;;
        esac
    fi
    if [ -n "$host" ]; then
        case "$host" in
        *:* | *[0-9].*[0-9].*[0-9].*[0-9]) ip=$host ;;
        esac
        if [ -z "$ip" ] && [ -f "$dir/hosts" ]; then
            # An /etc/hosts fragment: ADDRESS NAME...
            ip=$(awk -v h="$host" '!/^[[:space:]]*#/ { for (i = 2; i <= NF; i++) if ($i == h) { print $1; exit } }' "$dir/hosts")
        fi
        if [ -z "$ip" ] && [ -f "$dir/hosts" ]; then
            missing="$missing
  - an address for $host in $dir/hosts (istioctl's --ingressIP, or the east-west gateway's LoadBalancer address)"
        fi
    fi
    case "$ip" in *:*) ip="[$ip]" ;; esac

    ns='' sa='' cluster='' network='' svcip='' mesh=''
    env=$dir/cluster.env
    if [ -f "$env" ]; then
        ns=$(envvalue "$env" POD_NAMESPACE)
        [ -n "$ns" ] || ns=$(envvalue "$env" ISTIO_NAMESPACE)
        sa=$(envvalue "$env" SERVICE_ACCOUNT)
        cluster=$(envvalue "$env" ISTIO_META_CLUSTER_ID)
        network=$(envvalue "$env" ISTIO_META_NETWORK)
        mesh=$(envvalue "$env" ISTIO_META_MESH_ID)
        svcip=$(envvalue "$env" ISTIO_SVC_IP)
        [ -n "$ns" ] || missing="$missing
  - POD_NAMESPACE or ISTIO_NAMESPACE in $env (the WorkloadGroup's namespace)"
        [ -n "$sa" ] || missing="$missing
  - SERVICE_ACCOUNT in $env (the WorkloadGroup's spec.template.serviceAccount)"
        # istioctl always writes it, empty when the cluster has no name (then istiod takes the node for
        # one of its own cluster, as meshdns's default cluster does): only its absence is an error.
        grep -q '^ISTIO_META_CLUSTER_ID=' "$env" || missing="$missing
  - ISTIO_META_CLUSTER_ID in $env (istioctl's --clusterID)"
        [ -n "$svcip" ] || missing="$missing
  - ISTIO_SVC_IP in $env (the VM's address: istioctl's --internalIP or --externalIP)"
    fi
    name=
    [ -f "$ROOT/etc/hostname" ] && name=$(head -n 1 "$ROOT/etc/hostname")
    [ -n "$name" ] || name=$(hostname 2>/dev/null || true)
    name=${name%%.*}
    [ -n "$name" ] || missing="$missing
  - the VM's host name ($ROOT/etc/hostname or hostname(1)), for the node id"

    if [ -n "$missing" ]; then
        echo "install.sh: --istio $dir: not found:$missing" >&2
        return 1
    fi
    # istio-agent's node: sidecar~IP~POD.NS~NS.svc.DOMAIN, POD being the host name on a VM. Not sent:
    # ISTIO_META_AUTO_REGISTER_GROUP (meshdns is not the workload: istio-agent registers the VM).
    cat <<EOF
# Written by deploy/vm/install.sh from the files of istioctl x workload entry configure in
#   $dir
# istiod ($discovery) at $ip, as the VM's istio-agent reaches it; the rest is forwarded to
# the resolvers the VM had before (/etc/meshdns/upstream.conf).
. {
    bind 127.0.0.1 ::1
    errors
    cache 30
    meshdns {
        nds $ip:$port {
            tls {\$CREDENTIALS_DIRECTORY}/root-cert.pem $host
            token $ISTIO_TOKEN
            node_id sidecar~$svcip~$name.$ns~$ns.svc.cluster.local
EOF
    [ -z "$cluster" ] || echo "            cluster $cluster"
    cat <<EOF
            metadata SERVICE_ACCOUNT $sa
EOF
    [ -z "$network" ] || echo "            metadata NETWORK $network"
    [ -z "$mesh" ] || echo "            metadata MESH_ID $mesh"
    cat <<EOF
        }
        namespace $ns
        fallthrough
    }
    forward . /etc/meshdns/upstream.conf
    prometheus 127.0.0.1:9153
    health 127.0.0.1:8080
    reload
}
EOF
}

install_meshdns() {
    istio=
    if [ "${1:-}" = --istio ]; then
        [ $# -ge 2 ] || die "--istio wants istioctl's output directory"
        istio=$2
        shift 2
    fi
    binary=${1:-bin/coredns}
    [ -x "$binary" ] || die "no executable at $binary: build it first (make build)"
    [ -e "$MANIFEST" ] && die "already installed (see $MANIFEST); uninstall first"
    corefile=
    if [ -n "$istio" ]; then
        # Everything is read and checked before anything is written.
        corefile=$(istio_corefile "$istio") || exit 1
    fi
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
    if [ -n "$istio" ]; then
        printf '%s\n' "$corefile" >"$STATE/Corefile"
        put "$STATE/Corefile" "$ROOT/etc/meshdns/Corefile" 0644
        rm -f "$STATE/Corefile"
        put "$istio/root-cert.pem" "$ROOT$ISTIO_ROOT_CERT" 0644
        put "$istio/istio-token" "$ROOT$ISTIO_TOKEN" 0600
    elif [ ! -e "$ROOT/etc/meshdns/Corefile" ]; then
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
            if [ -f "$ROOT/etc/resolv.conf" ]; then grep -E '^[[:space:]]*(search|domain|options)[[:space:]]' "$ROOT/etc/resolv.conf" || true; fi
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
        # A directory gone (/var/run is a tmpfs: a reboot empties it) or holding what someone else
        # put there since (istio-agent's files) is left as it is, and the rest still undone.
        dir) [ ! -d "$path" ] || rmdir "$path" 2>/dev/null || echo "install.sh: kept $path: not empty" >&2 ;;
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
show)
    { [ "${2:-}" = --istio ] && [ $# -eq 3 ]; } || die "usage: $0 show --istio DIR"
    istio_corefile "$3"
    ;;
uninstall) uninstall_meshdns ;;
*) echo "usage: $0 install [--istio DIR] [BINARY] | show --istio DIR | uninstall" >&2; exit 2 ;;
esac
