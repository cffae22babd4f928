#!/usr/bin/env bash
# compare.sh: side-by-side dnsperf benchmark of the meshdns plugin against CoreDNS's stock hosts
# plugin serving the very same names and addresses.
#
# Three coredns processes run at once: an upstream stub (answers NXDOMAIN to everything, standing in
# for the cluster's upstream resolver), a meshdns server and a hosts server, both falling through to
# the stub with forward. The server under test is pinned to one core and dnsperf (and the stub) to
# another, so that the server's single core is the bottleneck. For each query mix the two servers are
# measured alternately (ABBA order, to spread drift on a noisy machine) and the median QPS is reported.
#
# Usage: bench/compare.sh            (from anywhere; about 4.5 minutes)
#        QUICK=1 bench/compare.sh    (CI smoke: 2s runs, 1 round)
# Settings (environment): NAMES ROUNDS DURATION MIXES CLIENTS OUTSTANDING SERVER_CPU CLIENT_CPU
#   STUB_CPU BASE_PORT PROFILE PROFILE_SECONDS PPROF_ADDR BUILD KEEP_TMP RECORD; defaults below.
#   PROFILE=1 also writes a CPU profile of meshdns (pprof -top) to bench/results/DATE-pprof-meshdns.txt.
# Needs go, dnsperf and dig; taskset (util-linux) for pinning, which is skipped without it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin/coredns

if [[ ${QUICK:-0} == 1 ]]; then # CI smoke defaults, still overridable
	: "${DURATION:=2}" "${ROUNDS:=1}" "${RECORD:=0}"
fi
NAMES=${NAMES:-10000}             # services in the generated table
ROUNDS=${ROUNDS:-4}               # measurements per server and mix
DURATION=${DURATION:-8}           # seconds per dnsperf run
MIXES=${MIXES:-"hits aaaa miss mixed"}
CLIENTS=${CLIENTS:-10}            # dnsperf -c: source ports, so the kernel spreads them
OUTSTANDING=${OUTSTANDING:-200}   # dnsperf -q: enough in flight to keep one server core busy
SERVER_CPU=${SERVER_CPU:-0}       # core of the server under test
CLIENT_CPU=${CLIENT_CPU:-1}       # core of dnsperf
STUB_CPU=${STUB_CPU:-$CLIENT_CPU} # core of the upstream stub, off the server's core
BASE_PORT=${BASE_PORT:-15350}     # stub, meshdns and hosts listen on BASE_PORT, +1, +2
PROFILE=${PROFILE:-0}             # 1: also CPU-profile meshdns under the mixed load
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
PPROF_ADDR=${PPROF_ADDR:-127.0.0.1:6060}
BUILD=${BUILD:-0}                 # 1: rebuild bin/coredns even if it looks up to date
KEEP_TMP=${KEEP_TMP:-0}           # 1: keep the generated data and server logs
RECORD=${RECORD:-1}               # 1: append the results to bench/results/DATE.txt (QUICK: 0)

((ROUNDS >= 1 && DURATION >= 1)) || { echo "compare.sh: ROUNDS and DURATION must be at least 1" >&2; exit 1; }
STUB_PORT=$BASE_PORT
MESH_PORT=$((BASE_PORT + 1))
HOSTS_PORT=$((BASE_PORT + 2))
WARMUP=$((DURATION < 2 ? DURATION : 2))

die() {
	echo "compare.sh: $*" >&2
	exit 1
}

for tool in go dnsperf dig; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
# Pinning needs taskset and two cores; without them the numbers are noisier but still comparable.
PIN=0
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
	PIN=1
else
	echo "compare.sh: no taskset or fewer than 2 cores: not pinning" >&2
fi
# pinned CPU CMD...: execs CMD on CPU. Call it only in a subshell, "(pinned ...) &" or "$(pinned ...)":
# the exec makes $! the pid of CMD itself, so that cleanup can kill it.
pinned() {
	local cpu=$1
	shift
	if ((PIN)); then
		exec taskset -c "$cpu" "$@"
	fi
	exec "$@"
}

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
	if [[ $KEEP_TMP == 1 ]]; then
		echo "compare.sh: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Rebuild when asked, or when the binary is missing or older than the module's sources.
if [[ ! -x $BIN || $BUILD == 1 ]] ||
	[[ -n $(find "$ROOT/cmd" "$ROOT/plugin" "$ROOT/go.mod" "$ROOT/go.sum" "$ROOT/plugin.cfg" -newer "$BIN" -print -quit 2>/dev/null) ]]; then
	echo "building $BIN ..." >&2
	(cd "$ROOT" && go build -o bin/coredns ./cmd/coredns)
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
meshdns_corefile "" >"$TMP/Corefile.meshdns"
cat >"$TMP/Corefile.hosts" <<EOF
.:$HOSTS_PORT {
    bind 127.0.0.1
    hosts $TMP/hosts {
        reload 0
        fallthrough
    }
    forward . 127.0.0.1:$STUB_PORT
}
EOF

# answers PORT: whether a DNS server answers on 127.0.0.1:PORT.
answers() {
	dig @127.0.0.1 -p "$1" +time=1 +tries=1 +noall +comments probe.invalid A 2>/dev/null | grep -q 'status:'
}

# start NAME CPU PORT: runs coredns with $TMP/Corefile.NAME on CPU and waits until it answers.
start() {
	local name=$1 cpu=$2 port=$3 i
	# coredns binds with SO_REUSEPORT: a stray server on the port would silently take part of the load.
	if answers "$port"; then
		die "something already answers on 127.0.0.1:$port; set BASE_PORT"
	fi
	(pinned "$cpu" "$BIN" -quiet -conf "$TMP/Corefile.$name" >"$TMP/$name.log" 2>&1) &
	PIDS+=($!)
	for ((i = 0; i < 100; i++)); do
		answers "$port" && return 0
		kill -0 "${PIDS[-1]}" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/$name.log" >&2
	die "coredns ($name) did not come up on port $port"
}

# expect PORT NAME TYPE STATUS ANSWER: checks one reply's rcode and its answer section (dig +short).
expect() {
	local port=$1 qname=$2 qtype=$3 want_status=$4 want_answer=$5 out status answer
	out=$(dig @127.0.0.1 -p "$port" +time=2 +tries=1 "$qname" "$qtype")
	status=$(sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$out")
	answer=$(dig @127.0.0.1 -p "$port" +time=2 +tries=1 +short "$qname" "$qtype" | tr '\n' ' ')
	answer=${answer% }
	if [[ $status != "$want_status" || $answer != "$want_answer" ]]; then
		echo "$out" >&2
		die "port $port: $qname $qtype: got $status [$answer], want $want_status [$want_answer]"
	fi
}

# check PORT: sample answers of a server, so that a broken setup fails before it is measured.
check() {
	local port=$1 ip host
	read -r ip host < <(grep -v '^#' "$TMP/hosts" | sed -n 5p)
	expect "$port" "$host" A NOERROR "$ip"
	expect "$port" "$host" AAAA NOERROR ""         # NODATA: the name exists, with no AAAA
	expect "$port" name1.example.org A NXDOMAIN "" # fell through to forward and the stub
}

# run_dnsperf PORT MIX SECONDS OUT: one dnsperf run; writes "qps avg_latency_ms lost rcodes resp_bytes"
# to OUT. Not meant for $(...): the main shell must wait on dnsperf itself, or a signal's trap would
# only run once dnsperf is done.
run_dnsperf() {
	local port=$1 mix=$2 secs=$3 res=$4 log pid out
	# dnsperf runs in the background with its pid in a file, so that cleanup can stop it too.
	log=$(mktemp "$TMP/dnsperf.XXXXXX")
	(pinned "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$TMP/queries-$mix.txt" \
		-c "$CLIENTS" -T 1 -q "$OUTSTANDING" -t 2 -l "$secs" >"$log" 2>&1) &
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

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start stub "$STUB_CPU" "$STUB_PORT"
start meshdns "$SERVER_CPU" "$MESH_PORT"
MESH_PID=${PIDS[-1]}
start hosts "$SERVER_CPU" "$HOSTS_PORT"
check "$MESH_PORT"
check "$HOSTS_PORT"

# Results collect in $TMP and go to bench/results only once the run completes.
RESULTS=$TMP/results.txt
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
HEADER="# $(date -u +%FT%TZ) rev $REV $(go env GOVERSION) $(nproc) cores; names=$NAMES rounds=$ROUNDS duration=${DURATION}s clients=$CLIENTS outstanding=$OUTSTANDING server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU stub_cpu=$STUB_CPU"
echo "$HEADER" | tee -a "$RESULTS" >&2

# Both servers get a short unrecorded run first: Go's heap and the kernel's socket buffers settle.
run_dnsperf "$MESH_PORT" mixed "$WARMUP" /dev/null
run_dnsperf "$HOSTS_PORT" mixed "$WARMUP" /dev/null

declare -A PORT=([meshdns]=$MESH_PORT [hosts]=$HOSTS_PORT)
# The rcodes each mix must produce (NODATA is NOERROR; misses get the stub's NXDOMAIN).
declare -A WANT_CODES=([hits]=NOERROR [aaaa]=NOERROR [miss]=NXDOMAIN [mixed]=NOERROR,NXDOMAIN)
TABLE=$(printf '%-6s %12s %12s %6s %13s %12s %12s' mix "meshdns QPS" "hosts QPS" ratio "round ratios" "mesh lat ms" "hosts lat ms")
for mix in $MIXES; do
	[[ -f $TMP/queries-$mix.txt ]] || die "unknown mix $mix"
	: >"$TMP/runs.meshdns" && : >"$TMP/runs.hosts"
	for ((r = 1; r <= ROUNDS; r++)); do
		order="meshdns hosts"
		((r % 2 == 0)) && order="hosts meshdns"
		for server in $order; do
			run_dnsperf "${PORT[$server]}" "$mix" "$DURATION" "$TMP/run.res"
			res=$(<"$TMP/run.res")
			echo "$res" >>"$TMP/runs.$server"
			read -r qps lat lost codes size <<<"$res"
			line=$(printf 'run %-6s %-7s round %d: %8s qps %7s ms lost %s, %s B/response, %s' \
				"$mix" "$server" "$r" "$qps" "$lat" "$lost" "$size" "$codes")
			echo "$line" | tee -a "$RESULTS" >&2
			# Everything is answered locally: any loss or unexpected rcode makes the numbers suspect.
			got=$(tr ',' '\n' <<<"$codes" | sed 's/=.*//' | sort | paste -sd, -)
			if [[ $lost != 0 || $got != "${WANT_CODES[$mix]}" ]]; then
				echo "WARNING: $mix/$server round $r: lost $lost, codes $codes, want only ${WANT_CODES[$mix]}" |
					tee -a "$RESULTS" >&2
			fi
		done
	done
	mq=$(cut -d' ' -f1 "$TMP/runs.meshdns" | median)
	hq=$(cut -d' ' -f1 "$TMP/runs.hosts" | median)
	ml=$(cut -d' ' -f2 "$TMP/runs.meshdns" | median)
	hl=$(cut -d' ' -f2 "$TMP/runs.hosts" | median)
	# The ratio within each round (runs next to each other in time) shows how much noise there was.
	rr=$(paste -d' ' "$TMP/runs.meshdns" "$TMP/runs.hosts" | awk '{ print $1 / $6 }' | sort -g |
		awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
	TABLE+=$'\n'$(awk -v m="$mix" -v mq="$mq" -v hq="$hq" -v rr="$rr" -v ml="$ml" -v hl="$hl" \
		'BEGIN { printf "%-6s %12.0f %12.0f %6.2f %13s %12.3f %12.3f", m, mq, hq, mq / hq, rr, ml, hl }')
done
echo "$TABLE" | tee -a "$RESULTS"
if [[ $RECORD == 1 ]]; then
	mkdir -p "$ROOT/bench/results"
	out=$ROOT/bench/results/$(date +%F).txt
	{
		cat "$RESULTS"
		echo
	} >>"$out"
	echo "results appended to $out" >&2
fi

if [[ $PROFILE == 1 ]]; then
	# A separate meshdns process with pprof, profiled under the mixed load. go tool pprof fetches the
	# profile itself, so no curl is needed.
	kill "$MESH_PID" && wait "$MESH_PID" 2>/dev/null || true
	meshdns_corefile "pprof $PPROF_ADDR" >"$TMP/Corefile.meshdns"
	start meshdns "$SERVER_CPU" "$MESH_PORT"
	run_dnsperf "$MESH_PORT" mixed $((PROFILE_SECONDS + 4)) "$TMP/profile.perf" &
	load=$!
	sleep 2
	mkdir -p "$ROOT/bench/results"
	PROF=$ROOT/bench/results/$(date +%F)-pprof-meshdns.txt
	go tool pprof -proto -output "$TMP/cpu.pb.gz" -seconds "$PROFILE_SECONDS" \
		"http://$PPROF_ADDR/debug/pprof/profile" 2>"$TMP/pprof.log" || {
		cat "$TMP/pprof.log" >&2
		die "cannot fetch the CPU profile"
	}
	{
		echo "# $(date -u +%FT%TZ) rev $REV: ${PROFILE_SECONDS}s CPU profile of meshdns under the mixed load"
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
