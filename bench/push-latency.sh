#!/usr/bin/env bash
# push-latency.sh: what control-plane pushes cost the queries being answered meanwhile. meshdns follows
# a stand-in control plane (bench/ndspush) over NDS, and dnsperf sends it table names at a fixed rate,
# below saturation, so latency is measured open loop rather than as throughput. Each round measures
# two modes alternately: "push", where ndspush sends a changed table (1% of the addresses moved, so
# the table really is rebuilt) every INTERVAL, and "none", where only the first table is pushed, when
# the stream opens. The per-query latencies of dnsperf -v give p50 to max; a table rebuild that
# stalled answers would show in p99 and above, and as lost queries if it stalled them for seconds.
#
# Every run starts ndspush and coredns afresh (so both modes start from the same state), waits until
# a table name answers, warms up at the rate, then measures. coredns is pinned to SERVER_CPU, dnsperf,
# the NXDOMAIN stub behind forward and ndspush to CLIENT_CPU.
#
# Usage: bench/push-latency.sh            (from anywhere; about 3 minutes)
#        QUICK=1 bench/push-latency.sh    (CI smoke: 3s runs, 1 round)
# Settings (environment): NAMES ROUNDS DURATION RATE RATE_PCT SAT_SECONDS INTERVAL ROTATE CLIENTS
#   OUTSTANDING SERVER_CPU CLIENT_CPU STUB_CPU BASE_PORT BUILD KEEP_TMP RECORD; defaults below.
#   Without RATE, a SAT_SECONDS unlimited run (no pushes) measures saturation and RATE is RATE_PCT of it.
# Needs go, dnsperf and dig; taskset (util-linux) for pinning, which is skipped without it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin/coredns

if [[ ${QUICK:-0} == 1 ]]; then # CI smoke defaults, still overridable
	: "${DURATION:=3}" "${ROUNDS:=1}" "${SAT_SECONDS:=2}" "${RECORD:=0}"
fi
NAMES=${NAMES:-10000}             # services in the pushed table
ROUNDS=${ROUNDS:-3}               # runs per mode
DURATION=${DURATION:-20}          # seconds per measured dnsperf run
RATE=${RATE:-}                    # dnsperf -Q; empty: RATE_PCT of the measured saturation
RATE_PCT=${RATE_PCT:-50}
SAT_SECONDS=${SAT_SECONDS:-5}     # length of the saturation run
INTERVAL=${INTERVAL:-1s}          # push period of the "push" mode
ROTATE=${ROTATE:-1}               # percentage of the addresses each push changes
CLIENTS=${CLIENTS:-10}            # dnsperf -c
# dnsperf -q. At a fixed rate it must not be the limit: dnsperf stops sending when it is reached, and
# a stall would then hold back the queries that should have seen it (coordinated omission).
OUTSTANDING=${OUTSTANDING:-5000}
SERVER_CPU=${SERVER_CPU:-0}       # core of coredns
CLIENT_CPU=${CLIENT_CPU:-1}       # core of dnsperf and ndspush
STUB_CPU=${STUB_CPU:-$CLIENT_CPU} # core of the upstream stub
BASE_PORT=${BASE_PORT:-15360}     # stub, meshdns, ADS and metrics listen on BASE_PORT, +1, +2, +3
BUILD=${BUILD:-0}                 # 1: rebuild bin/coredns even if it looks up to date
KEEP_TMP=${KEEP_TMP:-0}           # 1: keep the generated data, logs and latencies
RECORD=${RECORD:-1}               # 1: append the results to bench/results/DATE-push-latency.txt (QUICK: 0)

((ROUNDS >= 1 && DURATION >= 1 && SAT_SECONDS >= 1)) ||
	{ echo "push-latency.sh: ROUNDS, DURATION and SAT_SECONDS must be at least 1" >&2; exit 1; }
[[ -z $RATE || $RATE =~ ^[1-9][0-9]*$ ]] || { echo "push-latency.sh: RATE must be a positive integer" >&2; exit 1; }
STUB_PORT=$BASE_PORT
MESH_PORT=$((BASE_PORT + 1))
ADS_PORT=$((BASE_PORT + 2))
METRICS_PORT=$((BASE_PORT + 3))
WARMUP=$((DURATION < 2 ? DURATION : 2))

die() {
	echo "push-latency.sh: $*" >&2
	exit 1
}

for tool in go dnsperf dig; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
setup_pinning push-latency.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshdns-push.XXXXXX")
PIDS=() # long-lived: the stub
RUN_PIDS=() # per run: ndspush and coredns
DNSPERF_PID=
cleanup() {
	local pid
	for pid in $DNSPERF_PID "${RUN_PIDS[@]}" "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $DNSPERF_PID "${RUN_PIDS[@]}" "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP_TMP == 1 ]]; then
		echo "push-latency.sh: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ! -x $BIN || $BUILD == 1 ]] ||
	[[ -n $(find "$ROOT/cmd" "$ROOT/plugin" "$ROOT/go.mod" "$ROOT/go.sum" "$ROOT/plugin.cfg" -newer "$BIN" -print -quit 2>/dev/null) ]]; then
	echo "building $BIN ..." >&2
	(cd "$ROOT" && go build -o bin/coredns ./cmd/coredns)
fi
(cd "$ROOT" && go build -o "$TMP/ndspush" ./bench/ndspush)

echo "generating the query files for $NAMES names into $TMP ..." >&2
(cd "$ROOT" && go run ./bench/gentable -n "$NAMES" -out "$TMP")
QUERIES=$TMP/queries-hits.txt

cat >"$TMP/Corefile.stub" <<EOF
.:$STUB_PORT {
    bind 127.0.0.1
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
# No log/errors/cache plugins: only the lookup path, and the table rebuilds, run on the server's core.
cat >"$TMP/Corefile.meshdns" <<EOF
.:$MESH_PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$METRICS_PORT
    meshdns {
        nds 127.0.0.1:$ADS_PORT
        fallthrough
    }
    forward . 127.0.0.1:$STUB_PORT
}
EOF

# answers PORT: whether a DNS server answers on 127.0.0.1:PORT.
answers() {
	dig @127.0.0.1 -p "$1" +time=1 +tries=1 +noall +comments probe.invalid A 2>/dev/null | grep -q 'status:'
}

# table_answers: whether meshdns answers a name of the pushed table (before the first push it falls
# through to the stub's NXDOMAIN).
table_answers() {
	[[ -n $(dig @127.0.0.1 -p "$MESH_PORT" +time=1 +tries=1 +short svc0.ns0.svc.cluster.local A 2>/dev/null) ]]
}

# read_pushes: sets APPLIED and REJECTED from coredns_meshdns_nds_pushes_total of meshdns, read over
# bash's /dev/tcp so that no HTTP client is needed.
read_pushes() {
	local metrics
	exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT" || die "cannot reach the metrics on port $METRICS_PORT"
	printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	metrics=$(cat <&3)
	exec 3<&-
	read -r APPLIED REJECTED < <(awk '/^coredns_meshdns_nds_pushes_total\{/ {
			if ($0 ~ /result="applied"/) a += $NF; else if ($0 ~ /result="rejected"/) r += $NF
		}
		END { printf "%d %d\n", a, r }' <<<"$metrics")
}

start_stub() {
	answers "$STUB_PORT" && die "something already answers on 127.0.0.1:$STUB_PORT; set BASE_PORT"
	(pinned "$STUB_CPU" "$BIN" -quiet -conf "$TMP/Corefile.stub" >"$TMP/stub.log" 2>&1) &
	PIDS+=($!)
	local i
	for ((i = 0; i < 100; i++)); do
		answers "$STUB_PORT" && return 0
		sleep 0.1
	done
	cat "$TMP/stub.log" >&2
	die "the stub did not come up on port $STUB_PORT"
}

# start_run INTERVAL: starts ndspush pushing every INTERVAL (0: once per stream) and coredns following
# it, and waits until a table name answers.
start_run() {
	local interval=$1 i
	# coredns binds with SO_REUSEPORT: a stray server on the port would silently take part of the load.
	answers "$MESH_PORT" && die "something already answers on 127.0.0.1:$MESH_PORT; set BASE_PORT"
	(pinned "$CLIENT_CPU" "$TMP/ndspush" -addr "127.0.0.1:$ADS_PORT" -names "$NAMES" \
		-interval "$interval" -rotate "$ROTATE" >"$TMP/ndspush.log" 2>&1) &
	RUN_PIDS=($!)
	for ((i = 0; i < 100; i++)); do
		grep -qs '^ndspush: serving' "$TMP/ndspush.log" && break
		kill -0 "${RUN_PIDS[0]}" 2>/dev/null || break
		sleep 0.1
	done
	grep -qs '^ndspush: serving' "$TMP/ndspush.log" || {
		cat "$TMP/ndspush.log" >&2
		die "ndspush did not come up on port $ADS_PORT"
	}
	(pinned "$SERVER_CPU" "$BIN" -quiet -conf "$TMP/Corefile.meshdns" >"$TMP/meshdns.log" 2>&1) &
	RUN_PIDS+=($!)
	for ((i = 0; i < 150; i++)); do
		table_answers && return 0
		kill -0 "${RUN_PIDS[1]}" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/meshdns.log" "$TMP/ndspush.log" >&2
	die "meshdns did not answer a table name within 15s"
}

# stop_run: stops coredns, then ndspush, and sets COUNTS to ndspush's final counts. Call it in the
# main shell, never in $(...): only the shell that started them can wait for them, and the next run
# must not start before their ports are free.
stop_run() {
	local pid
	for pid in "${RUN_PIDS[@]:1:1}" "${RUN_PIDS[@]:0:1}"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "push-latency.sh: WARNING: process $pid of the run exited before the end of the run" >&2
		fi
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	RUN_PIDS=()
	COUNTS=$(sed -n 's/^ndspush: total //p' "$TMP/ndspush.log")
}

# run_dnsperf SECONDS RATE OUT [-v]: one dnsperf run over the hits file (RATE 0: unlimited), its
# output in OUT. Not meant for $(...): the main shell waits on dnsperf itself, so that a signal's trap
# runs at once.
run_dnsperf() {
	local secs=$1 rate=$2 out=$3 verbose=${4:-} q=$OUTSTANDING
	local args=(-s 127.0.0.1 -p "$MESH_PORT" -d "$QUERIES" -c "$CLIENTS" -T 1 -t 2 -l "$secs")
	if ((rate > 0)); then
		args+=(-Q "$rate")
	else
		q=200 # as compare.sh: enough to keep one server core busy, no more
	fi
	(pinned "$CLIENT_CPU" dnsperf "${args[@]}" -q "$q" $verbose >"$out" 2>&1) &
	DNSPERF_PID=$!
	if ! wait "$DNSPERF_PID"; then
		DNSPERF_PID=
		grep -v '^>' "$out" >&2
		die "dnsperf failed"
	fi
	DNSPERF_PID=
}

# summarize OUT: "qps lost servfail p50 p90 p99 p99.9 max" (latencies in ms) of a dnsperf -v run;
# the percentiles are over the answered queries, lost ones (timed out after 2s) are counted apart.
summarize() {
	local out=$1 head
	head=$(grep -v '^>' "$out" | awk '
		/Queries lost:/ { lost = $3 }
		/Response codes:/ { for (i = 3; i <= NF; i++) if ($i == "SERVFAIL") sf = $(i + 1) }
		/Queries per second:/ { qps = $4 }
		END { if (qps == "") exit 1; printf "%.0f %d %d", qps, lost, sf }') || {
		grep -v '^>' "$out" >&2
		die "cannot parse dnsperf output"
	}
	# "> NOERROR name A 0.000123" per answer; "> T name A" per query lost.
	awk '/^> / && $2 != "T" { print $NF }' "$out" | LC_ALL=C sort -n | awk -v head="$head" '
		{ v[NR] = $1 }
		function pct(p, i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return v[i] * 1000 }
		END {
			if (NR == 0) exit 1
			printf "%s %.3f %.3f %.3f %.3f %.3f\n", head, pct(0.5), pct(0.9), pct(0.99), pct(0.999), v[NR] * 1000
		}' || die "no per-query latencies in the dnsperf output"
}

# rcvbuf_errors: the kernel's count of UDP datagrams dropped for a full socket receive buffer
# (machine-wide). Queries lost at a rate far below saturation are mostly these: the server stalled
# long enough for its socket buffer to fill.
rcvbuf_errors() {
	awk '$1 == "Udp:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; n = 1 } else print $c }' /proc/net/snmp 2>/dev/null || echo 0
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start_stub

if [[ -z $RATE ]]; then
	start_run 0
	run_dnsperf "$WARMUP" 0 /dev/null
	run_dnsperf "$SAT_SECONDS" 0 "$TMP/sat.out"
	stop_run
	SAT=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$TMP/sat.out")
	[[ -n $SAT ]] || die "cannot read the saturation QPS"
	RATE=$((SAT * RATE_PCT / 100))
	((RATE >= 1)) || die "saturation of $SAT QPS is too low"
	echo "saturation: $SAT qps (no pushes, ${SAT_SECONDS}s); rate: $RATE qps ($RATE_PCT%)" >&2
else
	SAT=not-measured
fi

RESULTS=$TMP/results.txt
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
HEADER="# $(date -u +%FT%TZ) rev $REV $(go env GOVERSION) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); names=$NAMES rounds=$ROUNDS duration=${DURATION}s interval=$INTERVAL rotate=$ROTATE% saturation=$SAT rate=$RATE clients=$CLIENTS outstanding=$OUTSTANDING server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU"
echo "$HEADER" | tee -a "$RESULTS" >&2

declare -A MODE_INTERVAL=([push]=$INTERVAL [none]=0)
: >"$TMP/runs.push" && : >"$TMP/runs.none"
for ((r = 1; r <= ROUNDS; r++)); do
	order="push none"
	((r % 2 == 0)) && order="none push" # alternate, to spread drift on a noisy machine
	for mode in $order; do
		start_run "${MODE_INTERVAL[$mode]}"
		run_dnsperf "$WARMUP" "$RATE" /dev/null
		read_pushes
		before=$APPLIED rejected_before=$REJECTED drops_before=$(rcvbuf_errors)
		run_dnsperf "$DURATION" "$RATE" "$TMP/run.out" -v
		read_pushes
		after=$APPLIED rejected_after=$REJECTED drops=$(($(rcvbuf_errors) - drops_before))
		stop_run
		counts=$COUNTS
		res=$(summarize "$TMP/run.out")
		[[ $KEEP_TMP == 1 ]] && mv "$TMP/run.out" "$TMP/run-$mode-$r.out"
		applied=$((after - before))
		rejected=$((rejected_after - rejected_before))
		echo "$res $applied $rejected" >>"$TMP/runs.$mode"
		read -r qps lost sf p50 p90 p99 p999 max <<<"$res"
		line=$(printf 'run %-4s round %d: %6s qps  p50 %7s  p90 %7s  p99 %7s  p99.9 %7s  max %8s ms  lost %s (udp rcvbuf drops %d)  servfail %s  pushes applied %d rejected %d  (ndspush: %s)' \
			"$mode" "$r" "$qps" "$p50" "$p90" "$p99" "$p999" "$max" "$lost" "$drops" "$sf" "$applied" "$rejected" "$counts")
		echo "$line" | tee -a "$RESULTS" >&2
		if ((lost != 0 || sf != 0 || rejected != 0)) || [[ $counts == *nacks=[1-9]* ]]; then
			echo "WARNING: $mode round $r: lost $lost, SERVFAIL $sf, rejected pushes $rejected ($counts)" | tee -a "$RESULTS" >&2
		fi
	done
done

# Medians over the rounds: columns of runs.MODE are qps lost servfail p50 p90 p99 p99.9 max applied rejected.
col() { cut -d' ' -f"$2" "$TMP/runs.$1" | median; }
sum() { awk -v c="$2" '{ s += $c } END { print s + 0 }' "$TMP/runs.$1"; }
TABLE=$(printf '%-5s %8s %8s %8s %8s %9s %6s %8s %7s' mode p50_ms p90_ms p99_ms p99.9_ms max_ms lost servfail pushes)
for mode in push none; do
	TABLE+=$'\n'$(printf '%-5s %8.3f %8.3f %8.3f %8.3f %9.3f %6s %8s %7s' "$mode" "$(col "$mode" 4)" "$(col "$mode" 5)" \
		"$(col "$mode" 6)" "$(col "$mode" 7)" "$(col "$mode" 8)" "$(sum "$mode" 2)" "$(sum "$mode" 3)" "$(sum "$mode" 9)")
done
# The ratio of the medians, and the spread of the ratio within each round (runs next to each other).
rr=$(paste -d' ' "$TMP/runs.push" "$TMP/runs.none" | awk '{ print $6 / $16 }' | sort -g |
	awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
TABLE+=$'\n'$(awk -v a="$(col push 6)" -v b="$(col none 6)" -v rr="$rr" \
	'BEGIN { printf "p99(push)/p99(none) = %.2f (rounds %s); medians over rounds, lost/servfail/pushes summed", a / b, rr }')
echo "$TABLE" | tee -a "$RESULTS"
if [[ $RECORD == 1 ]]; then
	mkdir -p "$ROOT/bench/results"
	out=$ROOT/bench/results/$(date +%F)-push-latency.txt
	{
		cat "$RESULTS"
		echo
	} >>"$out"
	echo "results appended to $out" >&2
fi
