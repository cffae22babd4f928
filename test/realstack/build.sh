#!/usr/bin/env bash
# Builds the real control planes the tests run against (etcd, kube-apiserver, istiod, and istioctl from
# the same istio.io/istio version, for onboarding a VM) and the parts of
# a real node (kubelet, kube-proxy, kube-controller-manager, kube-scheduler, kubectl, CNI plugins)
# from the Go module proxy and caches them outside the checkout, keyed by version:
#   ${MESHDNS_STACK_CACHE:-/var/cache/meshdns/realstack}/<name>-<version>/<binary>
# A cache hit takes seconds. Each binary is built in its own throwaway module because their
# dependency versions clash. Keep the versions in step with test/realstack/binaries.go.
set -euo pipefail

ETCD_VERSION=v3.7.3
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2 # the staging modules (k8s.io/api, ...) released with KUBE_VERSION
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad
CNI_VERSION=v1.10.0

CACHE="${MESHDNS_STACK_CACHE:-/var/cache/meshdns/realstack}"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"
KUBE_DIR="$CACHE/kubernetes-$KUBE_VERSION"
ISTIO_DIR="$CACHE/pilot-discovery-$ISTIO_VERSION"
ISTIOCTL_DIR="$CACHE/istioctl-$ISTIO_VERSION"
CNI_DIR="$CACHE/cni-plugins-$CNI_VERSION"
# Every Kubernetes binary comes from one `go build` of one module: they share most packages, so this
# costs little more than kube-apiserver alone. kube-apiserver is last: install_into's cache-hit marker.
KUBE_CMDS=(kubelet kube-proxy kube-controller-manager kube-scheduler kubectl kube-apiserver)
CNI_CMDS=(main/bridge main/loopback ipam/host-local meta/portmap)

export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export CGO_ENABLED=0 # static binaries; no C toolchain needed on a fresh machine

mkdir -p "$CACHE"
# One build at a time per cache (two CI jobs on one machine would otherwise race and double the RAM).
if command -v flock >/dev/null; then
    exec 9>"$CACHE/.lock"
    flock 9
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log() { printf '%s realstack: %s\n' "$(date +%T)" "$*" >&2; }

# run NAME CMD...: runs CMD with its output in $WORK/NAME.log, shown only when it fails.
run() {
    local name=$1
    shift
    if ! "$@" >"$WORK/$name.log" 2>&1; then
        log "$name failed: $*"
        tail -n 100 "$WORK/$name.log" >&2
        return 1
    fi
}

# Module set-up (downloads, network-bound) runs in parallel; the builds (CPU- and RAM-bound: a
# kube-apiserver or pilot-discovery link peaks near 3 GB) run one after another, each using every core.

prep_etcd() {
    local m="$WORK/etcd"
    mkdir -p "$m" && cd "$m"
    go mod init realstack/etcd
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
}
build_etcd() {
    cd "$WORK/etcd"
    go build -mod=mod -trimpath -ldflags='-s -w' -o "$WORK/out/etcd" go.etcd.io/etcd/server/v3
}

prep_kube() {
    local m="$WORK/kube"
    mkdir -p "$m" && cd "$m"
    go mod init realstack/kube
    # k8s.io/kubernetes replaces every staging module with ./staging/...; point each at its
    # released version instead (a dependent module cannot use those relative replaces).
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
    local mods
    mods="$(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$gomod")"
    [ -n "$mods" ] || { echo "no staging replaces found in $gomod"; return 1; }
    local r
    for r in $mods; do
        go mod edit -replace="$r=$r@$KUBE_STAGING_VERSION"
    done
    local c pkgs=()
    for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$KUBE_VERSION"); done
    go get "${pkgs[@]}"
}
build_kube() {
    cd "$WORK/kube"
    local v=k8s.io/component-base/version
    local minor=${KUBE_VERSION#v*.}
    minor=${minor%%.*}
    local major=${KUBE_VERSION#v}
    major=${major%%.*}
    local c pkgs=()
    for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    go build -mod=mod -trimpath \
        -ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=$major -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
        -o "$WORK/out/" "${pkgs[@]}"
}

prep_cni() {
    local m="$WORK/cni"
    mkdir -p "$m" && cd "$m"
    go mod init realstack/cni
    local c pkgs=()
    for c in "${CNI_CMDS[@]}"; do pkgs+=("github.com/containernetworking/plugins/plugins/$c@$CNI_VERSION"); done
    go get "${pkgs[@]}"
}
build_cni() {
    cd "$WORK/cni"
    local c pkgs=()
    for c in "${CNI_CMDS[@]}"; do pkgs+=("github.com/containernetworking/plugins/plugins/$c"); done
    go build -mod=mod -trimpath -ldflags='-s -w' -o "$WORK/out/" "${pkgs[@]}"
}

prep_istio() {
    local m="$WORK/istio"
    mkdir -p "$m" && cd "$m"
    go mod init realstack/istio
    go get "istio.io/istio/pilot/cmd/pilot-discovery@$ISTIO_VERSION"
}
build_istio() {
    cd "$WORK/istio"
    go build -mod=mod -trimpath -ldflags='-s -w' -o "$WORK/out/pilot-discovery" istio.io/istio/pilot/cmd/pilot-discovery
    # The CRDs istiod watches, from the same module version.
    local dir
    dir="$(go mod download -json "istio.io/istio@$ISTIO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    cp "$dir/manifests/charts/base/files/crd-all.gen.yaml" "$WORK/out/crd-all.gen.yaml"
}

# istioctl: its own throwaway module requiring only istio.io/istio at the same version, so the
# dependencies resolve exactly as for pilot-discovery and the build cache is shared with it.
prep_istioctl() {
    local m="$WORK/istioctl"
    mkdir -p "$m" && cd "$m"
    go mod init realstack/istioctl
    go get "istio.io/istio/istioctl/cmd/istioctl@$ISTIO_VERSION"
}
build_istioctl() {
    cd "$WORK/istioctl"
    go build -mod=mod -trimpath -ldflags='-s -w' -o "$WORK/out/istioctl" istio.io/istio/istioctl/cmd/istioctl
}

# install DIR FILE...: moves the built files into the cache; the binary goes last so that its presence
# (the cache-hit test) implies everything else is there.
install_into() {
    local dir=$1
    shift
    mkdir -p "$dir"
    local f
    for f in "$@"; do
        chmod u+w,a+r "$WORK/out/$f"
        mv -f "$WORK/out/$f" "$dir/$f.tmp"
        mv -f "$dir/$f.tmp" "$dir/$f"
    done
}

todo=()
[ -x "$ETCD_DIR/etcd" ] || todo+=(etcd)
[ -x "$KUBE_DIR/kube-apiserver" ] || todo+=(kube)
{ [ -x "$ISTIO_DIR/pilot-discovery" ] && [ -s "$ISTIO_DIR/crd-all.gen.yaml" ]; } || todo+=(istio)
[ -x "$CNI_DIR/portmap" ] || todo+=(cni)
[ -x "$ISTIOCTL_DIR/istioctl" ] || todo+=(istioctl) # after istio: it reuses that build's cache

if [ ${#todo[@]} -gt 0 ]; then
    # A bare Debian image has no CA bundle, and the module proxy is HTTPS.
    if [ ! -s /etc/ssl/certs/ca-certificates.crt ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq ca-certificates >/dev/null
    fi
    mkdir -p "$WORK/out"
    go version >&2
    log "preparing modules: ${todo[*]}"
    pids=()
    for t in "${todo[@]}"; do
        (run "prep-$t" "prep_$t") &
        pids+=($!)
    done
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    [ "$failed" = 0 ] || exit 1
    for t in "${todo[@]}"; do
        log "building $t"
        start=$SECONDS
        (run "build-$t" "build_$t")
        log "built $t in $((SECONDS - start))s"
        case $t in
        etcd) install_into "$ETCD_DIR" etcd ;;
        kube) install_into "$KUBE_DIR" "${KUBE_CMDS[@]}" ;;
        istio) install_into "$ISTIO_DIR" crd-all.gen.yaml pilot-discovery ;;
        cni) install_into "$CNI_DIR" bridge loopback host-local portmap ;;
        istioctl) install_into "$ISTIOCTL_DIR" istioctl ;;
        esac
    done
fi

log "etcd: $ETCD_DIR/etcd"
log "kubernetes: $KUBE_DIR (${KUBE_CMDS[*]})"
log "pilot-discovery: $ISTIO_DIR/pilot-discovery"
log "cni plugins: $CNI_DIR"
log "istioctl: $ISTIOCTL_DIR/istioctl"
echo "$CACHE"
