#!/usr/bin/env bash
# compare.sh: side-by-side dnsperf benchmark of the meshdns plugin against its peers (issue #4), all
# serving the very same names and addresses (bench/gentable's output):
#   meshdns    this repository's plugin, in bin/coredns
#   hosts      CoreDNS's stock hosts plugin, same binary: the reference the ratios are taken to
#   istio      Istio's own DNS proxy (istio.io/istio/pkg/dns/client, as istio-agent runs it), in the
#              harness bench/istioproxy (a module of its own)
#   unbound    unbound with local-data for every name, one thread, caches shrunk to one entry
#   mapserver  a bare miekg/dns server answering from a Go map (bench/mapserver): the floor for Go
#   knot       Knot DNS, authoritative for a cluster.local zone made from the same hosts file, one UDP
#              worker, no DNSSEC, no journal
#   nsd        NSD, the same zone, one server process
# and, to place meshdns against CoreDNS's cache (issue #4, item 3), each with `cache 30` in its Corefile:
#   meshdns-cache  meshdns above cache, as plugin.cfg orders them: only forwarded names reach the cache
#   cache-meshdns  meshdns below cache (cache answers what it holds): the same code built with
#                  meshdns moved just after cache in plugin.cfg (bin/coredns-cache-first)
#   cache-hosts    CoreDNS's hosts below cache
# Names not in the table go to an upstream stub (coredns answering NXDOMAIN to everything, standing in
# for the cluster's upstream resolver): coredns with forward, istio and mapserver with a dns.Client per
# query, unbound with a forward-zone. knot and nsd cannot forward: the miss mix's names (example.org)
# are outside their zone and REFUSED, so miss and mixed are n/a for them, as short is (AUTHORITATIVE).
# The zone mix stays inside cluster.local, where every server that is an authority for it answers
# alike (ZONE_SERVERS: meshdns, knot, nsd, unbound): hits, NODATA and NXDOMAIN, each flagged AA, the
# negative answers with the zone's SOA (TTL 30, minimum 30) in authority. meshdns serves it from a
# second block on its own port (ZONE_PORT) in the same process, `meshdns cluster.local` without
# fallthrough, which makes it the authority for the zone; unbound's local zone is static, with the
# same SOA. hosts, istio and mapserver forward absent names instead (n/a). Before anything is timed,
# each zone server's full reply to a hit, a NODATA and an NXDOMAIN (rcode, AA, answer and authority
# sections) is checked against the zone's, the SOA serial aside (meshdns's is its table's build time).
#
# Every server runs at once, each pinned to one core (SERVER_CPU) and dnsperf and the stub to another,
# so that the measured server's single core is the bottleneck; only the measured one is busy. Each
# server's answers are checked with dig before anything is timed. For each query mix the servers are
# measured in turn, in reverse order every other round (ABBA, to spread drift on a noisy machine), and
# the median QPS, its ratio to hosts and meshdns's ratio to each peer are reported. Mixes: hits (A of
# table names), aaaa (NODATA), miss (forwarded, NXDOMAIN), mixed (70/15/15) and short (name.ns, a
# Kubernetes short form: only meshdns and istio answer it, the others would forward it, so n/a); knot
# and nsd only in hits, aaaa (NODATA with the zone's SOA) and zone; zone (inside cluster.local: 70 %
# hits, 15 % NODATA, 15 % NXDOMAIN for Services absent from existing namespaces) only for ZONE_SERVERS.
# With a peer in SERVERS the results go to bench/results/DATE-peers.txt, with a bar chart of the ratios
# to hosts in DATE-peers.png (gnuplot; skipped with a warning without it).
#
# Usage: bench/compare.sh                           (from anywhere; about 12 minutes, ROUNDS=3: 9)
#        SERVERS="meshdns hosts" bench/compare.sh   (the original pair, results in DATE.txt)
#        QUICK=1 bench/compare.sh                   (CI smoke: 2s runs, 1 round, nothing recorded)
#        SERVERS="meshdns hosts cache-meshdns meshdns-cache cache-hosts" bench/compare.sh
#                                                   (the cache placement, results in DATE-cache.txt)
#        SERVERS="meshdns knot nsd unbound hosts" bench/compare.sh
#                                                   (the authoritative C servers, in DATE-peers.txt;
#                                                   not in the default: 12s more for QUICK=1)
#        SERVER_SHARE=40 SERVERS="meshdns knot nsd unbound" MIXES="hits zone" bench/compare.sh
#                                                   (capacity against the authorities, in and out of
#                                                   the zone's names: DATE-peers-share40.txt)
# Settings (environment): SERVERS NAMES ROUNDS DURATION MIXES CLIENTS OUTSTANDING SERVER_CPU CLIENT_CPU
#   STUB_CPU BASE_PORT PROFILE PROFILE_SECONDS PROFILE_MIX PPROF_ADDR BUILD KEEP_TMP RECORD RECORD_TAG
#   LATENCY SERVER_SHARE; defaults below.
#   MULTISOCKET=N gives the CoreDNS servers N listening sockets (multisocket N), unbound N threads,
#   knot N UDP workers and nsd N server processes (both with SO_REUSEPORT sockets),
#   for throughput on more than one core, e.g. with SERVER_CPU=0,1 CLIENT_CPU=0,1 STUB_CPU=0,1
#   DNSPERF_THREADS=2 (the results then go to DATE-multisocket.txt).
#   SERVER_SHARE=N limits every server to N% of its core (cgroup CPU quota): a server faster than
#   dnsperf's own core can then be saturated, and the ratios compare capacity (DATE-...-shareN.txt).
#   LATENCY=1 also runs every server at half of hosts's saturation (its median QPS in the same mix)
#   and reports the p50/p99/p99.9 of every query's latency (dnsperf -v) and each server's CPU time per
#   answered query (/proc, at the same rate: a capacity ratio that dnsperf's own limit does not cap);
#   the issue's "p99 at half of saturation no worse than hosts".
#   PROFILE=1 also writes a CPU profile of meshdns (pprof -top) under PROFILE_MIX's load to
#   bench/results/DATE-pprof-meshdns.txt; with SERVER_SHARE, under the same CPU quota.
#   RECORD_TAG=-after appends it to the results' file names (DATE-peers-share40-after.txt), so that
#   a run to compare with another is kept apart from the day's series.
# Needs go, dnsperf, dig and ss (iproute2), and unbound, knotd and knotc (knot), nsd when measured;
# taskset (util-linux) for pinning, which is skipped without it; gnuplot for the chart. It installs
# nothing: a missing tool stops it, naming the Debian package.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin/coredns

if [[ ${QUICK:-0} == 1 ]]; then # CI smoke defaults, still overridable
	: "${DURATION:=2}" "${ROUNDS:=1}" "${RECORD:=0}"
fi
SERVERS=${SERVERS:-"meshdns hosts istio unbound mapserver"} # measured, in this order
NAMES=${NAMES:-10000}             # services in the generated table
ROUNDS=${ROUNDS:-4}               # measurements per server and mix
DURATION=${DURATION:-8}           # seconds per dnsperf run
MIXES=${MIXES:-"hits aaaa miss mixed short zone"}
CLIENTS=${CLIENTS:-10}            # dnsperf -c: source ports, so the kernel spreads them
OUTSTANDING=${OUTSTANDING:-200}   # dnsperf -q: enough in flight to keep one server core busy
SERVER_CPU=${SERVER_CPU:-0}       # core of the server under test
CLIENT_CPU=${CLIENT_CPU:-1}       # core of dnsperf
STUB_CPU=${STUB_CPU:-$CLIENT_CPU} # core of the upstream stub, off the server's core
BASE_PORT=${BASE_PORT:-15350}     # the stub on BASE_PORT, the servers on +1 to +11 (see PORT below)
PROFILE=${PROFILE:-0}             # 1: also CPU-profile meshdns under the mixed load
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
PROFILE_MIX=${PROFILE_MIX:-mixed} # the load profiled
PPROF_ADDR=${PPROF_ADDR:-127.0.0.1:6060}
BUILD=${BUILD:-0}                 # 1: rebuild bin/coredns (istioproxy, mapserver) even if up to date
KEEP_TMP=${KEEP_TMP:-0}           # 1: keep the generated data and server logs
LATENCY=${LATENCY:-0}             # 1: latency percentiles at half of hosts's saturation
MULTISOCKET=${MULTISOCKET:-0}     # N > 0: N listening sockets per CoreDNS server, N unbound threads
DNSPERF_THREADS=${DNSPERF_THREADS:-1} # dnsperf -T
SERVER_SHARE=${SERVER_SHARE:-0}   # N (1-99): each server limited to N% of its core (cgroup CPU quota)
RECORD=${RECORD:-1}               # 1: append the results to bench/results/DATE[-peers].txt (QUICK: 0)
RECORD_TAG=${RECORD_TAG:-}        # appended to the results' file names

((ROUNDS >= 1 && DURATION >= 1)) || { echo "compare.sh: ROUNDS and DURATION must be at least 1" >&2; exit 1; }
STUB_PORT=$BASE_PORT
declare -A PORT=([meshdns]=$((BASE_PORT + 1)) [hosts]=$((BASE_PORT + 2)) [istio]=$((BASE_PORT + 3))
	[unbound]=$((BASE_PORT + 4)) [mapserver]=$((BASE_PORT + 5))
	[cache-meshdns]=$((BASE_PORT + 6)) [meshdns-cache]=$((BASE_PORT + 7)) [cache-hosts]=$((BASE_PORT + 8))
	[knot]=$((BASE_PORT + 10)) [nsd]=$((BASE_PORT + 11))) # +9: the cache placements' stub
MESH_PORT=${PORT[meshdns]}
ZONE_PORT=$((BASE_PORT + 12)) # meshdns's block authoritative for cluster.local (the zone mix)
SHORT_FORMS=" meshdns istio cache-meshdns meshdns-cache " # the servers that answer Kubernetes short forms (the short mix)
AUTHORITATIVE=" knot nsd " # authoritative for cluster.local only: names outside it REFUSED, not forwarded (no miss, mixed)
ZONE_SERVERS=" meshdns knot nsd unbound " # an authority for cluster.local (the zone mix); the others forward its absent names
WARMUP=$((DURATION < 2 ? DURATION : 2))

die() {
	echo "compare.sh: $*" >&2
	exit 1
}

# has WORD LIST...: whether WORD is one of LIST.
has() {
	local w=$1 x
	shift
	for x in "$@"; do
		[[ $x == "$w" ]] && return 0
	done
	return 1
}

read -ra SERVER_LIST <<<"$SERVERS"
((${#SERVER_LIST[@]})) || die "SERVERS is empty"
for ((i = 0; i < ${#SERVER_LIST[@]}; i++)); do
	s=${SERVER_LIST[i]}
	[[ -n ${PORT[$s]:-} ]] || die "unknown server $s in SERVERS (known: ${!PORT[*]})"
	has "$s" "${SERVER_LIST[@]:0:i}" && die "$s is twice in SERVERS"
done
# Results of runs with peers go to their own files, so that the meshdns/hosts history stays one series.
SUFFIX=
for s in "${SERVER_LIST[@]}"; do
	[[ $s == meshdns || $s == hosts ]] || SUFFIX=-peers
done
for s in "${SERVER_LIST[@]}"; do
	[[ $s != *cache* ]] || SUFFIX=-cache
done
((MULTISOCKET == 0)) || SUFFIX=-multisocket
((SERVER_SHARE == 0)) || SUFFIX=$SUFFIX-share$SERVER_SHARE
[[ $RECORD_TAG =~ ^[A-Za-z0-9._-]*$ ]] || die "RECORD_TAG must be a file name's letters, digits, dots, dashes"

# need TOOL PACKAGE: stops with the Debian package to install when TOOL is missing.
need() {
	command -v "$1" >/dev/null || die "$1 is not installed (Debian: apt-get install $2)"
}
need go golang-go
need dnsperf dnsperf
need dig bind9-dnsutils
need ss iproute2
if has unbound "${SERVER_LIST[@]}"; then
	need unbound unbound
fi
if has knot "${SERVER_LIST[@]}"; then
	need knotd knot
	need knotc knot
fi
if has nsd "${SERVER_LIST[@]}"; then
	need nsd nsd
fi
CHART=1
if ! command -v gnuplot >/dev/null; then
	echo "compare.sh: WARNING: gnuplot is not installed (Debian: apt-get install gnuplot-nox): no chart" >&2
	CHART=0
fi
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
setup_pinning compare.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshdns-bench.XXXXXX")
PIDS=()
cleanup() {
	local pid f
	for f in "$TMP"/dnsperf.*.pid; do
		[[ -f $f ]] && kill "$(<"$f")" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n ${CGROUP:-} ]]; then
		sleep 0.2 # the killed servers leave the group
		rmdir "$CGROUP" 2>/dev/null || true
	fi
	if [[ $KEEP_TMP == 1 ]]; then
		echo "compare.sh: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stale BINARY SOURCES...: whether BINARY must be (re)built: asked to, missing, or older than a source.
stale() {
	local bin=$1
	shift
	[[ ! -x $bin || $BUILD == 1 ]] || [[ -n $(find "$@" -newer "$bin" -print -quit 2>/dev/null) ]]
}
# Everything is built before anything is measured. coredns also runs the stub, so it is always needed.
if stale "$BIN" "$ROOT/cmd" "$ROOT/plugin" "$ROOT/go.mod" "$ROOT/go.sum" "$ROOT/plugin.cfg"; then
	echo "building $BIN ..." >&2
	(cd "$ROOT" && go build -o bin/coredns ./cmd/coredns)
fi
if has istio "${SERVER_LIST[@]}" && stale "$ROOT/bin/istioproxy" "$ROOT/bench/istioproxy"; then
	echo "building $ROOT/bin/istioproxy (module bench/istioproxy) ..." >&2
	(cd "$ROOT/bench/istioproxy" && go build -o "$ROOT/bin/istioproxy" .)
fi
# meshdns below cache: the same sources with meshdns's line moved just after cache's in plugin.cfg.
CACHE_FIRST=$ROOT/bin/coredns-cache-first
if has cache-meshdns "${SERVER_LIST[@]}" && stale "$CACHE_FIRST" "$ROOT/cmd" "$ROOT/plugin" "$ROOT/go.mod" "$ROOT/go.sum" "$ROOT/plugin.cfg"; then
	echo "building $CACHE_FIRST (meshdns below cache) ..." >&2
	src=$(mktemp -d "${TMPDIR:-/tmp}/meshdns-cache-first.XXXXXX")
	(cd "$ROOT" && tar cf - --exclude=./bin --exclude=./.git .) | (cd "$src" && tar xf -)
	awk '/^meshdns:/ { next } { print } /^cache:/ { print "meshdns:github.com/meshdns/meshdns/plugin/meshdns" }' \
		"$ROOT/plugin.cfg" >"$src/plugin.cfg"
	(cd "$src" && go generate ./cmd/coredns && go build -o "$CACHE_FIRST" ./cmd/coredns)
	rm -rf "$src"
fi
if has mapserver "${SERVER_LIST[@]}" && stale "$ROOT/bin/mapserver" "$ROOT/bench/mapserver" "$ROOT/go.mod" "$ROOT/go.sum"; then
	echo "building $ROOT/bin/mapserver ..." >&2
	(cd "$ROOT" && go build -o bin/mapserver ./bench/mapserver)
fi

echo "generating $NAMES names into $TMP ..." >&2
(cd "$ROOT" && go run ./bench/gentable -n "$NAMES" -out "$TMP")

# One Corefile per process. No log/errors/cache plugins: only the lookup path is measured. Both
# table sources are read once (reload 0), so no file checks run during the measurements.
cat >"$TMP/Corefile.stub" <<EOF
.:$STUB_PORT {
    bind 127.0.0.1
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
meshdns_corefile() { # $1: an extra directive, e.g. pprof
	cat <<EOF
.:$MESH_PORT {
    bind 127.0.0.1${1:+
    $1}
    meshdns {
        file $TMP/nametable.yaml 0
        fallthrough
    }
    forward . 127.0.0.1:$STUB_PORT
}
EOF
}
# The zone mix's block: the same table, with the plugin the authority for cluster.local (its zone,
# no fallthrough): absent names there are NXDOMAIN with the zone's SOA; the rest is forwarded.
meshdns_zone_block() {
	cat <<EOF
.:$ZONE_PORT {
    bind 127.0.0.1
    meshdns cluster.local {
        file $TMP/nametable.yaml 0
    }
    forward . 127.0.0.1:$STUB_PORT
}
EOF
}
{
	meshdns_corefile ""
	meshdns_zone_block
} >"$TMP/Corefile.meshdns"
# The cache placements: the same blocks with cache above, on their own ports, forwarding to a stub
# whose NXDOMAIN carries an SOA, as a real upstream's does, so that forwarded names are cached too.
CACHED_STUB_PORT=$((BASE_PORT + 9))
cat >"$TMP/Corefile.cachedstub" <<EOF
.:$CACHED_STUB_PORT {
    bind 127.0.0.1
    template ANY ANY {
        rcode NXDOMAIN
        authority ". 60 IN SOA ns.stub. hostmaster.stub. 1 7200 1800 86400 60"
    }
}
EOF
for s in cache-meshdns meshdns-cache; do
	meshdns_corefile "cache 30" | sed -e "s/^\.:$MESH_PORT {/.:${PORT[$s]} {/" -e "s/:$STUB_PORT\$/:$CACHED_STUB_PORT/" >"$TMP/Corefile.$s"
done
cat >"$TMP/Corefile.hosts" <<EOF
.:${PORT[hosts]} {
    bind 127.0.0.1
    hosts $TMP/hosts {
        reload 0
        fallthrough
    }
    forward . 127.0.0.1:$STUB_PORT
}
EOF
sed -e "s/^\.:${PORT[hosts]} {/.:${PORT[cache-hosts]} {/" -e 's/^    bind 127.0.0.1$/&\n    cache 30/' -e "s/:$STUB_PORT\$/:$CACHED_STUB_PORT/" \
	"$TMP/Corefile.hosts" >"$TMP/Corefile.cache-hosts"
if ((MULTISOCKET > 0)); then
	for f in meshdns hosts cache-meshdns meshdns-cache cache-hosts; do
		sed -i "s/^    bind 127.0.0.1\$/&\n    multisocket $MULTISOCKET/" "$TMP/Corefile.$f"
	done
fi
# Istio's proxy takes its search list (which shapes its table: a CNAME per name with the first search
# domain appended) from a resolv.conf; this one matches meshdns's default without a namespace. A
# resolv.conf cannot name a port, so the stub's address is passed as -upstream as well.
printf 'nameserver 127.0.0.1\nsearch svc.cluster.local cluster.local\n' >"$TMP/resolv.conf"
# unbound: the hosts file as local-data in a static zone with the zone's SOA, NS and glue, as knot's
# and nsd's zone has them (names with data of other types get NODATA, names without any NXDOMAIN,
# both with the SOA, as an authority answers them), everything else forwarded to the stub. No DNSSEC
# (iterator only), one thread, no chroot or privilege drop. Its caches cannot be turned off, only shrunk:
# at size 0 each keeps the last entry, so forwarded misses are not answered from cache (the stub's
# NXDOMAIN has no SOA, which unbound would keep for 5 seconds: the whole miss mix).
{
	cat <<EOF
server:
    interface: 127.0.0.1
    port: ${PORT[unbound]}
    do-ip6: no
    num-threads: $((MULTISOCKET > 0 ? MULTISOCKET : 1))
    chroot: ""
    username: ""
    directory: "$TMP"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    msg-cache-size: 0
    msg-cache-slabs: 1
    rrset-cache-size: 0
    rrset-cache-slabs: 1
    local-zone: "cluster.local." static
    local-data: "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30"
    local-data: "cluster.local. 30 IN NS ns.dns.cluster.local."
    local-data: "ns.dns.cluster.local. 30 IN A 127.0.0.1"
EOF
	awk '!/^#/ && NF == 2 { printf "    local-data: \"%s. 30 IN A %s\"\n", $2, $1 }' "$TMP/hosts"
	cat <<EOF
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$STUB_PORT
EOF
} >"$TMP/unbound.conf"
# knot and nsd: one zone, cluster.local, with the hosts file's names and addresses, TTL 30 and the SOA
# meshdns puts in its negative answers (minimum 30); an NS with its glue, as a zone has.
{
	cat <<EOF
\$ORIGIN cluster.local.
\$TTL 30
@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30
@ NS ns.dns.cluster.local.
ns.dns A 127.0.0.1
EOF
	awk '!/^#/ && NF == 2 { printf "%s. A %s\n", $2, $1 }' "$TMP/hosts"
} >"$TMP/cluster.local.zone"
# Knot DNS: in the foreground as the invoking user (no user:), its control socket, timer and KASP
# databases in $TMP/knot; no DNSSEC (the default), no journal, the zone file never written back.
# MULTISOCKET=N: N UDP workers, each on its own SO_REUSEPORT socket (always so on Linux).
# Its one worker drains the socket in batches and drops a few of dnsperf's bursts (kernel UDP
# RcvbufErrors, the default 208 KiB buffer, about 0.01 %): the loss warning says so.
mkdir "$TMP/knot"
cat >"$TMP/knot.conf" <<EOF
server:
    rundir: "$TMP/knot"
    listen: 127.0.0.1@${PORT[knot]}
    udp-workers: $((MULTISOCKET > 0 ? MULTISOCKET : 1))
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$TMP/knot"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$TMP"
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: cluster.local
    file: "$TMP/cluster.local.zone"
EOF
if has knot "${SERVER_LIST[@]}"; then
	knotc -c "$TMP/knot.conf" conf-check >"$TMP/knotc.log" 2>&1 || { cat "$TMP/knotc.log" >&2; die "knot.conf does not check"; }
fi
# NSD as write_nsd_conf sets it up: its rate limiting off, or dnsperf's NODATA were dropped (Knot
# limits rates only with mod-rrl, not loaded). MULTISOCKET=N: N server processes, each on its own
# SO_REUSEPORT socket.
write_nsd_conf "$TMP" "${PORT[nsd]}" $((MULTISOCKET > 0 ? MULTISOCKET : 1))

# answers PORT: whether a DNS server answers on 127.0.0.1:PORT.
answers() {
	dig @127.0.0.1 -p "$1" +time=1 +tries=1 +noall +comments probe.invalid A 2>/dev/null | grep -q 'status:'
}

# server_cmd NAME: the command line of server NAME (or the stub).
server_cmd() {
	local port=${PORT[$1]:-$STUB_PORT}
	[[ $1 != cachedstub ]] || port=$CACHED_STUB_PORT
	case $1 in
	stub | cachedstub | meshdns | hosts | meshdns-cache | cache-hosts) echo "$BIN" -quiet -conf "$TMP/Corefile.$1" ;;
	cache-meshdns) echo "$CACHE_FIRST" -quiet -conf "$TMP/Corefile.$1" ;;
	istio) echo "$ROOT/bin/istioproxy" -table "$TMP/nametable.yaml" -addr "127.0.0.1:$port" \
		-resolv-conf "$TMP/resolv.conf" -upstream "127.0.0.1:$STUB_PORT" ;;
	unbound) echo unbound -d -c "$TMP/unbound.conf" ;;
	knot) echo knotd -c "$TMP/knot.conf" ;;
	nsd) echo nsd -d -c "$TMP/nsd.conf" ;;
	mapserver) echo "$ROOT/bin/mapserver" -table "$TMP/nametable.yaml" -addr "127.0.0.1:$port" \
		-upstream "127.0.0.1:$STUB_PORT" ;;
	esac
}

# start NAME CPU PORT: runs server NAME (server_cmd) on CPU and waits until it answers.
start() {
	local name=$1 cpu=$2 port=$3 i cmd
	# coredns binds with SO_REUSEPORT: a stray server on the port would silently take part of the load.
	if answers "$port" || [[ $name == meshdns ]] && answers "$ZONE_PORT"; then
		die "something already answers on 127.0.0.1:$port (or meshdns's zone port $ZONE_PORT); set BASE_PORT"
	fi
	read -ra cmd < <(server_cmd "$name") # no spaces in these paths: TMP and ROOT are checked below
	(pinned "$cpu" "${cmd[@]}" >"$TMP/$name.log" 2>&1) &
	PIDS+=($!)
	for ((i = 0; i < 100; i++)); do
		answers "$port" && return 0
		kill -0 "${PIDS[-1]}" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/$name.log" >&2
	die "$name did not come up on port $port"
}
[[ $TMP$ROOT != *[[:space:]]* ]] || die "the paths $ROOT and $TMP must not hold spaces"

# expect PORT NAME TYPE STATUS ANSWER [DIG_OPTION]: checks one reply's rcode and its answer section
# (dig +short).
expect() {
	local port=$1 qname=$2 qtype=$3 want_status=$4 want_answer=$5 opt=${6:-+notcp} out status answer
	out=$(dig @127.0.0.1 -p "$port" +time=2 +tries=1 "$opt" "$qname" "$qtype")
	status=$(sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$out")
	answer=$(dig @127.0.0.1 -p "$port" +time=2 +tries=1 "$opt" +short "$qname" "$qtype" | tr '\n' ' ')
	answer=${answer% }
	if [[ $status != "$want_status" || $answer != "$want_answer" ]]; then
		echo "$out" >&2
		die "port $port: $qname $qtype $opt: got $status [$answer], want $want_status [$want_answer]"
	fi
}

# check NAME: sample answers of a server, so that a broken setup fails before it is measured.
check() {
	local name=$1 port=${PORT[$1]} ip host ip2 host2
	read -r ip host < <(grep -v '^#' "$TMP/hosts" | sed -n 5p)
	read -r ip2 host2 < <(grep -v '^#' "$TMP/hosts" | tail -n 1)
	expect "$port" "$host" A NOERROR "$ip"
	expect "$port" "$host2" A NOERROR "$ip2"
	expect "$port" "$host2" A NOERROR "$ip2" +tcp
	expect "$port" "$host" AAAA NOERROR ""         # NODATA: the name exists, with no AAAA
	if [[ $AUTHORITATIVE == *" $name "* ]]; then
		# Their negative answers carry the zone's SOA; what is outside the zone they refuse.
		dig @127.0.0.1 -p "$port" +time=2 +tries=1 +noall +authority "$host" AAAA | grep -q 'IN[[:space:]]*SOA' ||
			die "port $port: $host AAAA: no SOA in the authority section of the NODATA"
		expect "$port" "nosuch.${host#*.}" A NXDOMAIN "" # in the zone
		expect "$port" name1.example.org A REFUSED ""
		expect "$port" "${host%.svc.cluster.local}" A REFUSED ""
		echo "checked $name on port $port: A (UDP, TCP), NODATA with SOA, NXDOMAIN in the zone, REFUSED outside" >&2
		return
	fi
	expect "$port" name1.example.org A NXDOMAIN "" # went to the stub
	if [[ $SHORT_FORMS == *" $name "* ]]; then
		expect "$port" "${host%.svc.cluster.local}" A NOERROR "$ip" # name.ns
	else
		expect "$port" "${host%.svc.cluster.local}" A NXDOMAIN "" # no short forms: went to the stub
	fi
	echo "checked $name on port $port: A (UDP, TCP), NODATA, miss, short form" >&2
}

# port_of MIX SERVER: the port SERVER is measured on in MIX (meshdns's zone block for the zone mix).
port_of() {
	if [[ $1 == zone && $2 == meshdns ]]; then
		echo "$ZONE_PORT"
	else
		echo "${PORT[$2]}"
	fi
}

# zone_reply PORT NAME TYPE: what every authority for cluster.local must answer alike, in one line:
# the rcode, AA, and the answer (an) and authority (ns) records, with the SOA serial as S. Asked as
# dnsperf asks: UDP, no EDNS.
zone_reply() {
	dig @127.0.0.1 -p "$1" +time=2 +tries=1 +notcp +noedns +noall +comments +answer +authority "$2" "$3" | awk '
		/->>HEADER<<-/ { status = $0; sub(/.*status: /, "", status); sub(/,.*/, "", status); next }
		/^;; flags:/ { aa = / aa[ ;]/ ? "aa" : "no-aa" }
		/^;; ANSWER SECTION/ { sec = "an" }
		/^;; AUTHORITY SECTION/ { sec = "ns" }
		/^;/ || NF == 0 { next }
		{ $1 = $1; if ($4 == "SOA") $7 = "S"; rr = rr " | " sec " " $0 }
		END { print status, aa rr }'
}

# check_zone NAME: the zone mix's three kinds of question, answered by NAME exactly as the zone says.
check_zone() {
	local name=$1 port ip host soa q want got
	port=$(port_of zone "$name")
	read -r ip host < <(grep -v '^#' "$TMP/hosts" | sed -n 5p)
	soa="ns cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. S 7200 1800 86400 30"
	for q in "$host A=NOERROR aa | an $host. 30 IN A $ip" "$host AAAA=NOERROR aa | $soa" \
		"svc$NAMES.ns1.svc.cluster.local A=NXDOMAIN aa | $soa"; do
		want=${q#*=}
		read -ra q <<<"${q%%=*}"
		got=$(zone_reply "$port" "${q[@]}")
		[[ $got == "$want" ]] || die "port $port: ${q[*]}: got [$got], want [$want] (the zone mix)"
	done
	echo "checked $name on port $port for the zone mix: hit, NODATA and NXDOMAIN as the zone has them (AA, SOA)" >&2
}

# run_dnsperf PORT MIX SECONDS OUT: one dnsperf run; writes "qps avg_latency_ms lost rcodes resp_bytes"
# to OUT. Not meant for $(...): the main shell must wait on dnsperf itself, or a signal's trap would
# only run once dnsperf is done.
run_dnsperf() {
	local port=$1 mix=$2 secs=$3 res=$4 log pid out
	# dnsperf runs in the background with its pid in a file, so that cleanup can stop it too.
	log=$(mktemp "$TMP/dnsperf.XXXXXX")
	(pinned "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$TMP/queries-$mix.txt" \
		-c "$CLIENTS" -T "$DNSPERF_THREADS" -q "$OUTSTANDING" -t 2 -l "$secs" >"$log" 2>&1) &
	pid=$!
	echo "$pid" >"$log.pid"
	if ! wait "$pid"; then
		cat "$log" >&2
		die "dnsperf failed"
	fi
	rm -f "$log.pid"
	out=$(<"$log")
	rm -f "$log"
	awk '
		/Queries lost:/ { lost = $3 }
		/Response codes:/ {
			# "NOERROR 9 (90.00%), NXDOMAIN 1 (10.00%)" -> "NOERROR=9(90.00%),NXDOMAIN=1(10.00%)"
			sub(/.*Response codes: */, ""); codes = $0
			gsub(/ \(/, "(", codes); gsub(/, /, ",", codes); gsub(/ /, "=", codes)
		}
		/Average packet size:/ { size = $NF }
		/Queries per second:/ { qps = $4 }
		/Average Latency/ { lat = $4 * 1000 }
		END {
			if (qps == "") exit 1
			printf "%.0f %.3f %s %s %s\n", qps, lat, lost, codes, size
		}' <<<"$out" >"$res" || {
		echo "$out" >&2
		die "cannot parse dnsperf output"
	}
}

# run_latency PORT MIX SECONDS RATE OUT: one dnsperf run at a fixed RATE with every query's latency
# (-v); writes "p50_ms p99_ms p999_ms lost answered" to OUT.
run_latency() {
	local port=$1 mix=$2 secs=$3 rate=$4 res=$5 log pid lost
	log=$(mktemp "$TMP/dnsperf.XXXXXX")
	(pinned "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$TMP/queries-$mix.txt" \
		-c "$CLIENTS" -T "$DNSPERF_THREADS" -q "$OUTSTANDING" -t 2 -l "$secs" -Q "$rate" -v >"$log" 2>&1) &
	pid=$!
	echo "$pid" >"$log.pid"
	wait "$pid" || {
		tail -20 "$log" >&2
		die "dnsperf failed"
	}
	rm -f "$log.pid"
	lost=$(awk '/Queries lost:/ { print $3 }' "$log")
	# Response lines: "> NOERROR name TYPE latency-seconds"; the last field is the latency.
	awk '$1 == ">" && $2 != "T" { print $NF * 1000 }' "$log" | sort -g | awk -v lost="$lost" '
		{ v[NR] = $1 }
		END {
			if (NR == 0) exit 1
			printf "%.3f %.3f %.3f %s %d\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], v[int(NR * 0.999) + 1], lost, NR
		}' >"$res" || die "no latencies in dnsperf's output"
	rm -f "$log"
}

# listener_pids PORT: the processes holding UDP sockets on 127.0.0.1:PORT (ss, iproute2), one a line:
# one for most, several for nsd (main, xfrd and each server process).
listener_pids() { ss -Hlunp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un || true; }
# cpu_ticks PIDS: the user and system CPU time PIDS (a word list) have used so far, in clock ticks.
cpu_ticks() {
	local pid t=0
	for pid in $1; do
		t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A SERVER_PID # the server processes themselves (a word list), for their CPU time and cgroup
start stub "$STUB_CPU" "$STUB_PORT"
if [[ $SUFFIX == -cache ]]; then
	start cachedstub "$STUB_CPU" "$CACHED_STUB_PORT"
fi
for s in "${SERVER_LIST[@]}"; do
	start "$s" "$SERVER_CPU" "${PORT[$s]}"
	SERVER_PID[$s]=$(listener_pids "${PORT[$s]}" | paste -sd' ' -)
	[[ -n ${SERVER_PID[$s]} ]] || die "no process found serving $s's port ${PORT[$s]}"
	if [[ $s == meshdns ]]; then
		MESH_PID=${PIDS[-1]}
	fi
done
for s in "${SERVER_LIST[@]}"; do
	check "$s"
	if [[ $ZONE_SERVERS == *" $s "* ]]; then
		check_zone "$s"
	fi
done

# SERVER_SHARE: a server that answers faster than dnsperf can ask on its one core is only measured
# as a lower bound; limited to a share of its core (the same for every server), each saturates below
# dnsperf's limit, and the QPS ratios are ratios of capacity. A CFS quota in a cgroup (v2, or v1's cpu
# controller), over a 20 ms period.
if ((SERVER_SHARE)); then
	((SERVER_SHARE < 100)) || die "SERVER_SHARE is a percentage of one core, 1 to 99"
	if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
		echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
		CGROUP=/sys/fs/cgroup/meshdns-bench.$$
		mkdir "$CGROUP" || die "SERVER_SHARE needs a writable cgroup tree (root)"
		echo "$((SERVER_SHARE * 200)) 20000" >"$CGROUP/cpu.max"
	elif [[ -d /sys/fs/cgroup/cpu ]]; then
		CGROUP=/sys/fs/cgroup/cpu/meshdns-bench.$$
		mkdir "$CGROUP" || die "SERVER_SHARE needs a writable cgroup tree (root)"
		echo 20000 >"$CGROUP/cpu.cfs_period_us"
		echo "$((SERVER_SHARE * 200))" >"$CGROUP/cpu.cfs_quota_us"
	else
		die "SERVER_SHARE needs the cgroup cpu controller at /sys/fs/cgroup"
	fi
	for s in "${SERVER_LIST[@]}"; do
		for pid in ${SERVER_PID[$s]}; do
			echo "$pid" >"$CGROUP/cgroup.procs"
		done
	done
fi

# Results collect in $TMP and go to bench/results only once the run completes.
RESULTS=$TMP/results.txt
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
VERSIONS=
if has istio "${SERVER_LIST[@]}"; then
	VERSIONS+=" istio $(cd "$ROOT/bench/istioproxy" && go list -m -f '{{.Version}}' istio.io/istio)"
fi
if has unbound "${SERVER_LIST[@]}"; then
	VERSIONS+=" unbound $(unbound -V | sed -n 's/^Version //p')"
fi
if has knot "${SERVER_LIST[@]}"; then
	VERSIONS+=" knot $(knotd -V | sed -n 's/.*version //p')"
fi
if has nsd "${SERVER_LIST[@]}"; then
	VERSIONS+=" nsd $(nsd -v 2>&1 | sed -n 's/^NSD version //p')"
fi
HEADER="# $(date -u +%FT%TZ) rev $REV $(go env GOVERSION)$VERSIONS $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); servers=${SERVER_LIST[*]} names=$NAMES rounds=$ROUNDS duration=${DURATION}s clients=$CLIENTS outstanding=$OUTSTANDING server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU stub_cpu=$STUB_CPU multisocket=$MULTISOCKET dnsperf_threads=$DNSPERF_THREADS"
echo "$HEADER" | tee -a "$RESULTS" >&2

# Every server gets a short unrecorded run first: Go's heap and the kernel's socket buffers settle.
for s in "${SERVER_LIST[@]}"; do
	if [[ $AUTHORITATIVE == *" $s "* ]]; then
		run_dnsperf "${PORT[$s]}" hits "$WARMUP" /dev/null # the mix they are measured in
	else
		run_dnsperf "${PORT[$s]}" mixed "$WARMUP" /dev/null
	fi
done

# The rcodes each mix must produce (NODATA is NOERROR; misses get the stub's NXDOMAIN).
declare -A WANT_CODES=([hits]=NOERROR [aaaa]=NOERROR [miss]=NXDOMAIN [mixed]=NOERROR,NXDOMAIN [short]=NOERROR
	[zone]=NOERROR,NXDOMAIN)
declare -A QPS LAT # by "mix server": medians; unset where not measured
declare -A BOUND   # by "mix server": runs where dnsperf, not the server, was the limit
for mix in $MIXES; do
	[[ -f $TMP/queries-$mix.txt ]] || die "unknown mix $mix"
	measured=()
	for s in "${SERVER_LIST[@]}"; do
		if [[ $mix == short && $SHORT_FORMS != *" $s "* ]]; then
			: # would be forwarded (or refused)
		elif [[ ($mix == miss || $mix == mixed) && $AUTHORITATIVE == *" $s "* ]]; then
			: # refused, not forwarded: cheaper, so not like-for-like
		elif [[ $mix == zone && $ZONE_SERVERS != *" $s "* ]]; then
			: # forwards the zone's absent names rather than answering them
		else
			measured+=("$s")
		fi
		: >"$TMP/runs.$s"
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		order=("${measured[@]}")
		if ((r % 2 == 0)); then # reversed every other round
			order=()
			for ((i = ${#measured[@]} - 1; i >= 0; i--)); do
				order+=("${measured[i]}")
			done
		fi
		for server in "${order[@]}"; do
			run_dnsperf "$(port_of "$mix" "$server")" "$mix" "$DURATION" "$TMP/run.res"
			res=$(<"$TMP/run.res")
			echo "$res" >>"$TMP/runs.$server"
			read -r qps lat lost codes size <<<"$res"
			line=$(printf 'run %-6s %-9s round %d: %8s qps %7s ms lost %s, %s B/response, %s' \
				"$mix" "$server" "$r" "$qps" "$lat" "$lost" "$size" "$codes")
			echo "$line" | tee -a "$RESULTS" >&2
			# Everything is answered locally: any loss or unexpected rcode makes the numbers suspect.
			got=$(tr ',' '\n' <<<"$codes" | sed 's/=.*//' | sort | paste -sd, -)
			if [[ $lost != 0 || $got != "${WANT_CODES[$mix]}" ]]; then
				echo "WARNING: $mix/$server round $r: lost $lost, codes $codes, want only ${WANT_CODES[$mix]}" |
					tee -a "$RESULTS" >&2
			fi
			# Little's law: a saturated server has nearly all OUTSTANDING queries waiting in front of it.
			# Far fewer means dnsperf (its core shared with the stub) could not send faster.
			inflight=$(awk -v q="$qps" -v l="$lat" 'BEGIN { printf "%.0f", q * l / 1000 }')
			if ((inflight * 4 < OUTSTANDING * 3)); then
				echo "WARNING: $mix/$server round $r: $inflight of $OUTSTANDING queries in flight (QPS x latency): client-bound, QPS is a lower bound" |
					tee -a "$RESULTS" >&2
				BOUND[$mix $server]=$((${BOUND[$mix $server]:-0} + 1))
			fi
		done
	done
	for s in "${measured[@]}"; do
		QPS[$mix $s]=$(cut -d' ' -f1 "$TMP/runs.$s" | median)
		LAT[$mix $s]=$(cut -d' ' -f2 "$TMP/runs.$s" | median)
		cp "$TMP/runs.$s" "$TMP/runs.$mix.$s"
	done
done

# ratio MIX A B: "median(A)/median(B) [lo-hi]", lo-hi the range of the per-round ratios (runs next to
# each other in time, so the range shows how much noise there was); n/a unless both were measured.
ratio() {
	local mix=$1 a=$2 b=$3
	if [[ -z ${QPS[$mix $a]:-} || -z ${QPS[$mix $b]:-} ]]; then
		echo n/a
		return
	fi
	paste -d' ' "$TMP/runs.$mix.$a" "$TMP/runs.$mix.$b" | awk -v a="${QPS[$mix $a]}" -v b="${QPS[$mix $b]}" '
		{ r = $1 / $6; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r }
		END { printf "%.2f [%.2f-%.2f]", a / b, lo, hi }'
}
# table TITLE CELL COLUMNS...: a table with a row per mix and a column per server, CELL MIX SERVER
# printing each cell.
table() {
	local title=$1 cell=$2 mix s
	shift 2
	echo "$title"
	printf '%-6s' mix
	printf ' %17s' "$@"
	echo
	for mix in $MIXES; do
		printf '%-6s' "$mix"
		for s; do
			printf ' %17s' "$("$cell" "$mix" "$s")"
		done
		echo
	done
}
qps_cell() { echo "${QPS[$1 $2]:-n/a}"; }
lat_cell() { echo "${LAT[$1 $2]:-n/a}"; }
to_hosts_cell() { ratio "$1" "$2" hosts; }
mesh_over_cell() { ratio "$1" meshdns "$2"; }
others() { # servers other than $1
	local s
	for s in "${SERVER_LIST[@]}"; do
		if [[ $s != "$1" ]]; then
			echo "$s"
		fi
	done
}
BOUND_LIST=$(printf '%s\n' "${!BOUND[@]}" | sort | while read -r m s; do
	if [[ -n $m ]]; then
		printf '%s/%s %d of %d, ' "$m" "$s" "${BOUND[$m $s]}" "$ROUNDS"
	fi
done)
BOUND_LIST=${BOUND_LIST%, }
mapfile -t NOT_HOSTS < <(others hosts)
mapfile -t NOT_MESH < <(others meshdns)
{
	table "median QPS" qps_cell "${SERVER_LIST[@]}"
	echo
	table "median of the average latencies, ms" lat_cell "${SERVER_LIST[@]}"
	if has hosts "${SERVER_LIST[@]}" && ((${#NOT_HOSTS[@]})); then
		echo
		table "QPS relative to hosts: median ratio [per-round range]" to_hosts_cell "${NOT_HOSTS[@]}"
	fi
	if has meshdns "${SERVER_LIST[@]}" && ((${#NOT_MESH[@]})); then
		echo
		table "meshdns QPS / peer QPS: median ratio [per-round range]" mesh_over_cell "${NOT_MESH[@]}"
	fi
	echo "(n/a: not measured; the short mix only for servers with Kubernetes short forms:${SHORT_FORMS% })"
	auth=$(for s in "${SERVER_LIST[@]}"; do [[ $AUTHORITATIVE != *" $s "* ]] || printf ' %s' "$s"; done)
	if [[ -n $auth ]]; then
		echo "(miss and mixed n/a for the authoritative$auth: they REFUSE the misses' names, outside cluster.local, instead of forwarding them)"
	fi
	if [[ " $MIXES " == *" zone "* ]]; then
		echo "(zone only for the authorities for cluster.local:${ZONE_SERVERS% }; meshdns on its \`meshdns cluster.local\` block; the others forward the zone's absent names)"
	fi
	if [[ -n $BOUND_LIST ]]; then
		echo "client-bound runs (under 3/4 of OUTSTANDING in flight: dnsperf was the limit, the QPS a lower bound): $BOUND_LIST"
	fi
} | tee -a "$RESULTS"

# Latency at half of hosts's saturation: every server at the same fixed rate, rounds alternated.
if [[ $LATENCY == 1 ]] && has hosts "${SERVER_LIST[@]}"; then
	declare -A P50 P99 P999 CPUQ
	for mix in $MIXES; do
		[[ -n ${QPS[$mix hosts]:-} ]] || continue
		rate=$((${QPS[$mix hosts]%.*} / 2))
		for s in "${SERVER_LIST[@]}"; do
			[[ -n ${QPS[$mix $s]:-} ]] && : >"$TMP/lat.$s"
		done
		for ((r = 1; r <= ROUNDS; r++)); do
			order=()
			for s in "${SERVER_LIST[@]}"; do
				[[ -n ${QPS[$mix $s]:-} ]] && order+=("$s")
			done
			if ((r % 2 == 0)); then
				mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
			fi
			for s in "${order[@]}"; do
				ticks=$(cpu_ticks "${SERVER_PID[$s]}")
				run_latency "${PORT[$s]}" "$mix" "$DURATION" "$rate" "$TMP/lat.res"
				ticks=$(($(cpu_ticks "${SERVER_PID[$s]}") - ticks))
				read -r p50 p99 p999 lost answered <"$TMP/lat.res"
				cpu=$(awk -v t="$ticks" -v hz="$HZ" -v n="$answered" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
				echo "$p50 $p99 $p999 $cpu" >>"$TMP/lat.$s"
				printf 'latency %-6s %-13s round %d at %d qps: p50 %s ms, p99 %s ms, p99.9 %s ms, lost %s, server CPU %s us/query\n' \
					"$mix" "$s" "$r" "$rate" "$p50" "$p99" "$p999" "$lost" "$cpu" | tee -a "$RESULTS" >&2
			done
		done
		for s in "${order[@]}"; do
			P50[$mix $s]=$(cut -d' ' -f1 "$TMP/lat.$s" | median)
			P99[$mix $s]=$(cut -d' ' -f2 "$TMP/lat.$s" | median)
			P999[$mix $s]=$(cut -d' ' -f3 "$TMP/lat.$s" | median)
			CPUQ[$mix $s]=$(cut -d' ' -f4 "$TMP/lat.$s" | median)
		done
	done
	cpu_cell() { echo "${CPUQ[$1 $2]:-n/a}"; }
	cpu_ratio_cell() {
		[[ -n ${CPUQ[$1 $2]:-} && -n ${CPUQ[$1 meshdns]:-} ]] || { echo n/a; return; }
		awk -v a="${CPUQ[$1 $2]}" -v b="${CPUQ[$1 meshdns]}" 'BEGIN { printf "%.2f", a / b }'
	}
	lat_pct_cell() { [[ -n ${P99[$1 $2]:-} ]] && echo "${P50[$1 $2]}/${P99[$1 $2]}/${P999[$1 $2]}" || echo n/a; }
	p99_ratio_cell() {
		[[ -n ${P99[$1 $2]:-} && -n ${P99[$1 hosts]:-} ]] || { echo n/a; return; }
		awk -v a="${P99[$1 $2]}" -v b="${P99[$1 hosts]}" 'BEGIN { printf "%.2f", a / b }'
	}
	{
		echo
		table "latency at half of hosts's saturation, ms: median p50/p99/p99.9 over $ROUNDS rounds" lat_pct_cell "${SERVER_LIST[@]}"
		echo
		table "p99 relative to hosts's p99 at the same rate (lower is better)" p99_ratio_cell "${NOT_HOSTS[@]}"
		echo
		table "server CPU per answered query at the same rate, us (median)" cpu_cell "${SERVER_LIST[@]}"
		if has meshdns "${SERVER_LIST[@]}"; then
			echo
			table "peer's CPU per query / meshdns's: queries meshdns serves with the CPU a peer spends on one (not bound by the client)" cpu_ratio_cell "${NOT_MESH[@]}"
		fi
	} | tee -a "$RESULTS"
fi

# The chart: for each mix that hosts was measured in, a bar per other server, its QPS over hosts's.
PNG=
if ((CHART)) && has hosts "${SERVER_LIST[@]}" && ((${#NOT_HOSTS[@]})); then
	{
		echo "mix ${NOT_HOSTS[*]}"
		for mix in $MIXES; do
			[[ -n ${QPS[$mix hosts]:-} ]] || continue
			printf '%s' "$mix"
			for s in "${NOT_HOSTS[@]}"; do
				awk -v a="${QPS[$mix $s]:-}" -v b="${QPS[$mix hosts]}" \
					'BEGIN { if (a == "") printf " NaN"; else printf " %.3f", a / b }'
			done
			echo
		done
	} >"$TMP/ratios.dat"
	PNG=$TMP/chart.png
	n=$((${#NOT_HOSTS[@]} + 1))
	gnuplot >"$TMP/gnuplot.log" 2>&1 <<EOF || { cat "$TMP/gnuplot.log" >&2; echo "compare.sh: WARNING: gnuplot failed: no chart" >&2; PNG=; }
set terminal pngcairo size 1000,560 noenhanced font ",10"
set output "$PNG"
set title "QPS relative to CoreDNS hosts, median of $ROUNDS rounds of ${DURATION}s; $NAMES names, server on 1 core\nrev $REV, $(date -u +%F)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.95
set datafile missing "NaN"
set key autotitle columnheader # the first line names the columns, for the labels too
set ylabel "median QPS / hosts median QPS (dashed: hosts)"
set yrange [0:*]
set ytics 0.25
set grid ytics
set key outside right top
set bmargin 4 # room for the client-bound note under the mix names
$([[ -z $BOUND_LIST ]] || echo "set label \"client-bound, so lower bounds: $BOUND_LIST\" at screen 0.01, screen 0.02 font \",8\"")
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linecolor "black"
plot for [i=2:$n] "$TMP/ratios.dat" using i:xtic(1), \\
	for [i=2:$n] "" using (\$0 + (i - 2 - ($n - 2) / 2.0) / $n.0):(column(i)):(sprintf("%.2f", column(i))) \\
		with labels offset 0,0.6 font ",8" notitle
EOF
fi

if [[ $RECORD == 1 ]]; then
	mkdir -p "$ROOT/bench/results"
	out=$ROOT/bench/results/$(date +%F)$SUFFIX$RECORD_TAG.txt
	{
		cat "$RESULTS"
		echo
	} >>"$out"
	echo "results appended to $out" >&2
	if [[ -n $PNG ]]; then
		cp "$PNG" "$ROOT/bench/results/$(date +%F)$SUFFIX$RECORD_TAG.png"
		echo "chart written to $ROOT/bench/results/$(date +%F)$SUFFIX$RECORD_TAG.png" >&2
	fi
elif [[ -n $PNG ]]; then
	echo "chart drawn, not recorded (RECORD=0): $PNG, kept with KEEP_TMP=1" >&2
fi

if [[ $PROFILE == 1 ]]; then
	has meshdns "${SERVER_LIST[@]}" || die "PROFILE=1 needs meshdns in SERVERS"
	# A separate meshdns process with pprof, profiled under PROFILE_MIX's load. go tool pprof fetches the
	# profile itself, so no curl is needed.
	kill "$MESH_PID" && wait "$MESH_PID" 2>/dev/null || true
	{
		meshdns_corefile "pprof $PPROF_ADDR"
		meshdns_zone_block
	} >"$TMP/Corefile.meshdns"
	start meshdns "$SERVER_CPU" "$MESH_PORT"
	if [[ -n ${CGROUP:-} ]]; then # profiled under the quota it was measured with
		for pid in $(listener_pids "$MESH_PORT"); do
			echo "$pid" >"$CGROUP/cgroup.procs"
		done
	fi
	[[ -f $TMP/queries-$PROFILE_MIX.txt ]] || die "unknown PROFILE_MIX $PROFILE_MIX"
	run_dnsperf "$(port_of "$PROFILE_MIX" meshdns)" "$PROFILE_MIX" $((PROFILE_SECONDS + 4)) "$TMP/profile.perf" &
	load=$!
	sleep 2
	mkdir -p "$ROOT/bench/results"
	PROF=$ROOT/bench/results/$(date +%F)-pprof-meshdns$RECORD_TAG.txt
	go tool pprof -proto -output "$TMP/cpu.pb.gz" -seconds "$PROFILE_SECONDS" \
		"http://$PPROF_ADDR/debug/pprof/profile" 2>"$TMP/pprof.log" || {
		cat "$TMP/pprof.log" >&2
		die "cannot fetch the CPU profile"
	}
	{
		echo "# $(date -u +%FT%TZ) rev $REV: ${PROFILE_SECONDS}s CPU profile of meshdns under the $PROFILE_MIX load${CGROUP:+, $SERVER_SHARE% of a core}"
		go tool pprof -top -nodecount=50 "$BIN" "$TMP/cpu.pb.gz" 2>&1
		echo
		echo "# by cumulative time"
		go tool pprof -top -cum -nodecount=50 "$BIN" "$TMP/cpu.pb.gz" 2>&1 | sed -n '/flat%/,$p'
	} >"$PROF"
	wait "$load"
	read -r qps lat lost codes size <"$TMP/profile.perf"
	echo "# load during the profile: $qps qps, $lat ms average latency, lost $lost, $codes" >>"$PROF"
	echo "profile written to $PROF" >&2
fi
