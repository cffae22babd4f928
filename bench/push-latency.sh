#!/usr/bin/env bash
# push-latency.sh: what control-plane pushes cost the queries being answered meanwhile. meshdns follows
# a stand-in control plane (bench/ndspush) over NDS, and bench/loadgen sends it table names at a
# fixed rate, open loop. Each round measures two modes alternately: "push", where ndspush sends a
# changed table (1% of the addresses moved) every INTERVAL, and "none", where only the first table is
# pushed, when the stream opens. A table update that stalled answers shows in p99 and above, and as
# lost queries if it stalled them for seconds.
#
# loadgen, not dnsperf: dnsperf times a query from when it actually sent it, so a stall holds back
# the queries that should have seen it (coordinated omission), and its receive thread, on the busy
# client core, adds its own scheduling to every latency (its p99 at 30k q/s was ~10 ms where a hit
# costs the server microseconds). loadgen times each query from when the schedule says it is due to
# the kernel's receive timestamp of its answer, and reports how late it sent (sendlag) and the time
# from the actual send (service) apart, so a run in which the client was the limit shows as such.
#
# Every run starts ndspush and coredns afresh (so both modes start from the same state), waits until
# a table name answers, warms up at the rate, then measures. coredns is pinned to SERVER_CPU, loadgen,
# the NXDOMAIN stub behind forward and ndspush to CLIENT_CPU; coredns and loadgen run at nice NICE,
# so that other work on a shared machine (compilers, other benchmarks) does not stand in for the
# server's own latency (NICE=0 to see it). Saturation is the server's: a closed-loop run, checked
# against the server's CPU time; when the client could not fill the server's core, the capacity is
# its answered rate over the share of the core it used (marked "estimated").
#
# The client's latencies count what its core does besides: on two cores, ndspush shares the client's
# (encoding each push, and the kernel's loopback TCP carrying it), and a push to a bystander process
# on that core raised the client's p99 at 30k q/s as much as a push to the server did (2026-12-04).
# So each run also reads the server's own latency histogram over the measured window (server p99:
# from the kernel's receive timestamp of each query to its answer handed back to the kernel), and
# the push/none ratio is given for both.
#
# Usage: bench/push-latency.sh            (from anywhere; about 3 minutes)
#        QUICK=1 bench/push-latency.sh    (CI smoke: 3s runs, 1 round)
#        TRACE=1 bench/push-latency.sh    (then one more run of each mode at the first rate, with an
#                                          execution trace of the server read by bench/tracegaps: what
#                                          held its P, and for how long at a stretch; needs curl)
#        PEER=nsd bench/push-latency.sh   (a third mode in each round: NSD serving the same names from
#                                          one zone, on the server's core, through the same client: this
#                                          harness's p99 for a C server that never changes; needs nsd)
# Settings (environment): NAMES ROUNDS DURATION RATE RATE_PCT SAT_SECONDS INTERVAL ROTATE SOCKETS
#   OUTSTANDING NICE SERVER_CPU CLIENT_CPU STUB_CPU BASE_PORT BIN BUILD KEEP_TMP RECORD PEER
#   SERVER_ENV; defaults
#   below.
#   Without RATE, a SAT_SECONDS closed-loop run (no pushes) measures saturation and RATE is RATE_PCT
#   of it. RATE may list several rates ("30000 sat", sat standing for RATE_PCT of the measured
#   saturation): each gets its rounds, all in one results block.
# Needs go and dig; taskset (util-linux) for pinning, which is skipped without it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/bin/coredns} # another binary (an older build, to compare) is used as it is

if [[ ${QUICK:-0} == 1 ]]; then # CI smoke defaults, still overridable
	: "${DURATION:=3}" "${ROUNDS:=1}" "${SAT_SECONDS:=2}" "${RECORD:=0}"
fi
NAMES=${NAMES:-10000}             # services in the pushed table
ROUNDS=${ROUNDS:-3}               # runs per mode
DURATION=${DURATION:-20}          # seconds per measured run
RATE=${RATE:-}                    # q/s (a list: each in turn); empty: RATE_PCT of the measured saturation
RATE_PCT=${RATE_PCT:-50}
SAT_SECONDS=${SAT_SECONDS:-5}     # length of the saturation run
INTERVAL=${INTERVAL:-1s}          # push period of the "push" mode
ROTATE=${ROTATE:-1}               # percentage of the addresses each push changes
SOCKETS=${SOCKETS:-16}            # loadgen's UDP sockets (source ports)
OUTSTANDING=${OUTSTANDING:-256}   # queries in flight in the saturation run (closed loop)
NICE=${NICE:--10}                 # niceness of coredns and loadgen (negative needs root; else ignored)
SERVER_CPU=${SERVER_CPU:-0}       # core of coredns
CLIENT_CPU=${CLIENT_CPU:-1}       # core of loadgen and ndspush
STUB_CPU=${STUB_CPU:-$CLIENT_CPU} # core of the upstream stub
BASE_PORT=${BASE_PORT:-15360}     # stub, meshdns, ADS and metrics listen on BASE_PORT, +1, +2, +3
BUILD=${BUILD:-0}                 # 1: rebuild bin/coredns even if it looks up to date
KEEP_TMP=${KEEP_TMP:-0}           # 1: keep the generated data, logs and latencies
TRACE=${TRACE:-0}                 # 1: a traced run of each mode after the measured ones (not measured)
RECORD=${RECORD:-1}               # 1: append the results to bench/results/DATE-push-latency.txt (QUICK: 0)
SERVER_ENV=${SERVER_ENV:-}        # VAR=VALUE words added to coredns's environment (GOMAXPROCS=2, GODEBUG=...)
PEER=${PEER:-}                    # nsd: also measure NSD with the same names, in each round

((ROUNDS >= 1 && DURATION >= 1 && SAT_SECONDS >= 1)) ||
	{ echo "push-latency.sh: ROUNDS, DURATION and SAT_SECONDS must be at least 1" >&2; exit 1; }
[[ -z $PEER || $PEER == nsd ]] || { echo "push-latency.sh: PEER must be nsd or empty" >&2; exit 1; }
[[ -z $RATE || $RATE =~ ^([1-9][0-9]*|sat)( ([1-9][0-9]*|sat))*$ ]] || { echo "push-latency.sh: RATE must be positive integers or sat" >&2; exit 1; }
STUB_PORT=$BASE_PORT
MESH_PORT=$((BASE_PORT + 1))
ADS_PORT=$((BASE_PORT + 2))
METRICS_PORT=$((BASE_PORT + 3))
PPROF_PORT=$((BASE_PORT + 4))
PEER_PORT=$((BASE_PORT + 5))
LOAD_PORT=$MESH_PORT # where run_load sends: meshdns, or the peer in its mode
WARMUP=$((DURATION < 2 ? DURATION : 2))

die() {
	echo "push-latency.sh: $*" >&2
	exit 1
}

[[ $TRACE != 1 ]] || command -v curl >/dev/null || die "TRACE=1 needs curl"
for tool in go dig; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
NSD=
if [[ $PEER == nsd ]]; then
	NSD=$(command -v nsd || echo /usr/sbin/nsd)
	[[ -x $NSD ]] || die "PEER=nsd needs nsd (Debian's nsd package)"
fi
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
setup_pinning push-latency.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/meshdns-push.XXXXXX")
PIDS=() # long-lived: the stub
RUN_PIDS=() # per run: ndspush and coredns
LOAD_PID=
cleanup() {
	local pid
	for pid in $LOAD_PID "${RUN_PIDS[@]}" "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $LOAD_PID "${RUN_PIDS[@]}" "${PIDS[@]}"; do
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

if [[ $BIN != "$ROOT/bin/coredns" ]]; then
	[[ -x $BIN ]] || die "BIN=$BIN is not an executable"
elif [[ ! -x $BIN || $BUILD == 1 ]] ||
	[[ -n $(find "$ROOT/cmd" "$ROOT/plugin" "$ROOT/go.mod" "$ROOT/go.sum" "$ROOT/plugin.cfg" -newer "$BIN" -print -quit 2>/dev/null) ]]; then
	echo "building $BIN ..." >&2
	(cd "$ROOT" && go build -o bin/coredns ./cmd/coredns)
fi
(cd "$ROOT" && go build -o "$TMP/ndspush" ./bench/ndspush && go build -o "$TMP/loadgen" ./bench/loadgen)
if [[ $TRACE == 1 ]]; then
	(cd "$ROOT/bench/tracegaps" && go build -o "$TMP/tracegaps" .) # a module of its own
fi

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
# No log/errors/cache plugins: only the lookup path, and the table updates, run on the server's core.
cat >"$TMP/Corefile.meshdns" <<EOF
.:$MESH_PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$METRICS_PORT$( ((TRACE == 1)) && printf '\n    pprof 127.0.0.1:%s' "$PPROF_PORT")
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

# read_pushes: sets APPLIED and REJECTED from coredns_meshdns_nds_pushes_total of meshdns, and GCS from
# go_gc_duration_seconds_count (the server's garbage collections), read over bash's /dev/tcp so that
# no HTTP client is needed.
read_pushes() {
	local metrics
	local i
	# The metrics listener may come up after the first table answers.
	for ((i = 0; i < 50; i++)); do
		{ exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"; } 2>/dev/null && break
		sleep 0.1
	done
	((i < 50)) || die "cannot reach the metrics on port $METRICS_PORT"
	printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	metrics=$(cat <&3)
	exec 3<&-
	read -r APPLIED REJECTED GCS < <(awk '/^coredns_meshdns_nds_pushes_total\{/ {
			if ($0 ~ /result="applied"/) a += $NF; else if ($0 ~ /result="rejected"/) r += $NF
		}
		/^go_gc_duration_seconds_count / { g = $NF }
		END { printf "%d %d %d\n", a, r, g }' <<<"$metrics")
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
	# The last run's coredns may still be draining its sockets: give it a few seconds.
	for ((i = 0; i < 50; i++)); do
		answers "$MESH_PORT" || break
		sleep 0.1
	done
	((i < 50)) || die "something already answers on 127.0.0.1:$MESH_PORT; set BASE_PORT"
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
	# shellcheck disable=SC2086 # SERVER_ENV is a list of VAR=VALUE words
	(pinned "$SERVER_CPU" nice -n "$NICE" env $SERVER_ENV "$BIN" -quiet -conf "$TMP/Corefile.meshdns" >"$TMP/meshdns.log" 2>&1) &
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

# server_latency: the server's own latency histogram (coredns_meshdns_batched_udp_latency_seconds:
# from the kernel's receive timestamp of a query to its answer handed back to the kernel), one
# "le cumulative-count" line per bucket; nothing from a server without it (the peer).
server_latency() {
	[[ ${LOAD_PORT} == "$MESH_PORT" ]] || return 0
	{ exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"; } 2>/dev/null || return 0
	printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	awk '/^coredns_meshdns_batched_udp_latency_seconds_bucket\{/ { match($0, /le="[^"]*"/); print substr($0, RSTART + 4, RLENGTH - 5), $NF }' <&3
	exec 3<&-
}

# quantile_between Q BEFORE AFTER: the Q quantile, in ms, of the latencies counted between two
# server_latency snapshots, interpolated within its bucket ("-" without any).
quantile_between() {
	awk -v q="$1" 'NR == FNR { a[$1] = $2; next } { le[++n] = $1; c[n] = $2 - a[$1] } END {
		if (n == 0 || c[n] <= 0) { print "-"; exit }
		want = q * c[n]; prev = 0; lo = 0
		for (i = 1; i <= n; i++) {
			if (c[i] >= want) {
				hi = (le[i] == "+Inf") ? lo : le[i]
				f = (c[i] > prev) ? (want - prev) / (c[i] - prev) : 1
				printf "%.3f", (lo + (hi - lo) * f) * 1000
				exit
			}
			prev = c[i]; lo = le[i]
		}
	}' "$2" "$3"
}

# run_load SECONDS RATE OUT: one loadgen run over the hits file after a warmup at the same rate (RATE
# 0: closed loop, for saturation), its key=value line in OUT, and sets SERVER_CPU_PCT to the share of
# its core coredns used while it measured. Not meant for $(...): the main shell waits on loadgen
# itself, so that a signal's trap runs at once.
run_load() {
	local secs=$1 rate=$2 out=$3 t0 t1
	(pinned "$CLIENT_CPU" nice -n "$NICE" "$TMP/loadgen" -server "127.0.0.1:$LOAD_PORT" -d "$QUERIES" \
		-rate "$rate" -duration "${secs}s" -warmup "${WARMUP}s" -timeout 2s -sockets "$SOCKETS" \
		-outstanding "$OUTSTANDING" >"$out" 2>&1) &
	LOAD_PID=$!
	sleep "$WARMUP"
	t0=$(cpu_ticks)
	server_latency >"$TMP/latency.before"
	if ! wait "$LOAD_PID"; then
		LOAD_PID=
		cat "$out" >&2
		die "loadgen failed"
	fi
	LOAD_PID=
	t1=$(cpu_ticks)
	server_latency >"$TMP/latency.after"
	SERVER_P99=$(quantile_between 0.99 "$TMP/latency.before" "$TMP/latency.after")
	# loadgen measures secs after its warmup and then waits 2s for the last answers; coredns is idle then.
	SERVER_CPU_PCT=$(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v s="$secs" 'BEGIN { printf "%.0f", 100 * d / hz / s }')
}

# The peer: NSD with one zone, cluster.local, holding the table's names and addresses (gentable's
# hosts file), one server process, as compare.sh runs it (write_nsd_conf). start_peer puts it in
# RUN_PIDS[1], where cpu_ticks looks for the server.
write_peer_config() {
	{
		echo '$TTL 30'
		echo '@ IN SOA ns.cluster.local. hostmaster.cluster.local. 1 3600 600 86400 30'
		echo '@ IN NS ns.cluster.local.'
		echo 'ns IN A 127.0.0.1'
		awk '!/^#/ && NF == 2 { print $2 ". IN A " $1 }' "$TMP/hosts"
	} >"$TMP/cluster.local.zone"
	write_nsd_conf "$TMP" "$PEER_PORT" 1
}

start_peer() {
	local i
	answers "$PEER_PORT" && die "something already answers on 127.0.0.1:$PEER_PORT; set BASE_PORT"
	(pinned "$SERVER_CPU" nice -n "$NICE" "$NSD" -d -c "$TMP/nsd.conf" >"$TMP/nsd.log" 2>&1) &
	RUN_PIDS=("" $!) # no ndspush: nothing in its place
	for ((i = 0; i < 100; i++)); do
		[[ -n $(dig @127.0.0.1 -p "$PEER_PORT" +time=1 +tries=1 +short svc0.ns0.svc.cluster.local A 2>/dev/null) ]] && return 0
		sleep 0.1
	done
	cat "$TMP/nsd.log" >&2
	die "nsd did not answer a table name within 10s"
}

stop_peer() {
	kill "${RUN_PIDS[1]}" 2>/dev/null || true
	wait "${RUN_PIDS[1]}" 2>/dev/null || true
	RUN_PIDS=()
	COUNTS=nsd
}

# cpu_ticks: the CPU time the server of the current run (coredns, or nsd and the processes it forks
# to serve) used so far, in clock ticks: the run's process and all below it.
cpu_ticks() {
	local pids=("${RUN_PIDS[1]}") i=0 children
	while ((i < ${#pids[@]})); do
		children=$(cat /proc/"${pids[i]}"/task/*/children 2>/dev/null || true)
		# shellcheck disable=SC2206 # the children's pids, one word each
		pids+=($children)
		i=$((i + 1))
	done
	# utime and stime are the 14th and 15th fields, counted after the name in parentheses, which may
	# hold spaces ("nsd: server 1").
	{ (cd /proc && cat $(printf '%s/stat ' "${pids[@]}")) 2>/dev/null || true; } |
		awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

# field KEY OUT: the value of KEY in loadgen's key=value line.
field() {
	tr ' ' '\n' <"$2" | sed -n "s/^$1=//p"
}

# rcvbuf_errors: the kernel's count of UDP datagrams dropped for a full socket receive buffer
# (machine-wide). Queries lost at a rate far below saturation are mostly these: the server stalled
# long enough for its socket buffer to fill.
rcvbuf_errors() {
	awk '$1 == "Udp:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; n = 1 } else print $c }' /proc/net/snmp 2>/dev/null || echo 0
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start_stub
[[ -z $PEER ]] || write_peer_config

if [[ -z $RATE || " $RATE " == *" sat "* ]]; then
	start_run 0
	run_load "$SAT_SECONDS" 0 "$TMP/sat.out"
	stop_run
	SAT=$(field qps "$TMP/sat.out")
	[[ -n $SAT && $SAT != 0 ]] || { cat "$TMP/sat.out" >&2; die "cannot read the saturation QPS"; }
	SAT_CPU=$SERVER_CPU_PCT
	if ((SAT_CPU < 90)); then
		# The client could not fill the server's core: its capacity is what it answered per core used.
		SAT=$(awk -v q="$SAT" -v c="$SAT_CPU" 'BEGIN { printf "%.0f", q * 100 / (c > 0 ? c : 1) }')
		SAT_NOTE="estimated: $(field qps "$TMP/sat.out") q/s answered at ${SAT_CPU}% of the server's core"
	else
		SAT_NOTE="measured: the server's core at ${SAT_CPU}%"
	fi
	rate=$((SAT * RATE_PCT / 100))
	((rate >= 1)) || die "saturation of $SAT QPS is too low"
	echo "saturation: $SAT qps ($SAT_NOTE; no pushes, ${SAT_SECONDS}s); rate: $rate qps ($RATE_PCT%)" >&2
	RATE=${RATE:-sat}
	RATE=$(sed "s/\bsat\b/$rate/" <<<"$RATE")
else
	SAT=not-measured SAT_NOTE=
fi

RESULTS=$TMP/results.txt
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
HEADER="# $(date -u +%FT%TZ) rev $REV $(go env GOVERSION) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); names=$NAMES rounds=$ROUNDS duration=${DURATION}s interval=$INTERVAL rotate=$ROTATE% saturation=$SAT${SAT_NOTE:+ ($SAT_NOTE)} rate=$RATE sockets=$SOCKETS nice=$NICE server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU${SERVER_ENV:+ server_env=\"$SERVER_ENV\"}"
echo "$HEADER" | tee -a "$RESULTS" >&2

declare -A MODE_INTERVAL=([push]=$INTERVAL [none]=0)
for rate in $RATE; do
	: >"$TMP/runs.$rate.push" && : >"$TMP/runs.$rate.none" && : >"$TMP/runs.$rate.$PEER"
	for ((r = 1; r <= ROUNDS; r++)); do
		order="push none${PEER:+ $PEER}"
		((r % 2 == 0)) && order="${PEER:+$PEER }none push" # alternate, to spread drift on a noisy machine
		for mode in $order; do
			if [[ $mode == "$PEER" ]]; then
				start_peer
				LOAD_PORT=$PEER_PORT APPLIED=0 REJECTED=0 GCS=0
			else
				start_run "${MODE_INTERVAL[$mode]}"
				read_pushes
			fi
			before=$APPLIED rejected_before=$REJECTED gcs_before=$GCS drops_before=$(rcvbuf_errors)
			run_load "$DURATION" "$rate" "$TMP/run.out"
			if [[ $mode == "$PEER" ]]; then
				stop_peer
				LOAD_PORT=$MESH_PORT
			else
				read_pushes
				stop_run
			fi
			after=$APPLIED rejected_after=$REJECTED drops=$(($(rcvbuf_errors) - drops_before))
			gcs=$((GCS - gcs_before))
			counts=$COUNTS
			[[ $KEEP_TMP == 1 ]] && cp "$TMP/run.out" "$TMP/run-$rate-$mode-$r.out"
			applied=$((after - before))
			rejected=$((rejected_after - rejected_before))
			vals=()
			for k in qps lost p50 p90 p99 p99.9 max sendlag_p99 service_p99; do
				v=$(field "$k" "$TMP/run.out")
				[[ -n $v ]] || { cat "$TMP/run.out" >&2; die "no $k in loadgen's output"; }
				vals+=("$v")
			done
			echo "${vals[*]} $SERVER_CPU_PCT $gcs $applied $rejected $SERVER_P99" >>"$TMP/runs.$rate.$mode"
			read -r qps lost p50 p90 p99 p999 max lag99 svc99 <<<"${vals[*]}"
			line=$(printf 'run %-4s rate %6d round %d: %6s qps  p50 %7s  p90 %7s  p99 %7s  p99.9 %7s  max %8s ms  (sendlag p99 %s, service p99 %s, server p99 %s)  server cpu %s%%  gcs %d  lost %s (udp rcvbuf drops %d)  pushes applied %d rejected %d  (ndspush: %s)' \
				"$mode" "$rate" "$r" "$qps" "$p50" "$p90" "$p99" "$p999" "$max" "$lag99" "$svc99" "$SERVER_P99" "$SERVER_CPU_PCT" "$gcs" "$lost" "$drops" "$applied" "$rejected" "$counts")
			echo "$line" | tee -a "$RESULTS" >&2
			if ((lost != 0 || rejected != 0)) || [[ $counts == *nacks=[1-9]* ]]; then
				echo "WARNING: $mode round $r: lost $lost, rejected pushes $rejected ($counts)" | tee -a "$RESULTS" >&2
			fi
		done
	done
done

# Medians over the rounds: columns of runs.RATE.MODE are qps lost p50 p90 p99 p99.9 max sendlag_p99
# service_p99 cpu gcs applied rejected server_p99 (- for the peer).
col() { cut -d' ' -f"$2" "$TMP/runs.$1" | median; }
sum() { awk -v c="$2" '{ s += $c } END { print s + 0 }' "$TMP/runs.$1"; }
TABLE=$(printf '%-6s %-5s %8s %8s %8s %8s %9s %10s %9s %6s %5s %6s %7s' rate mode p50_ms p90_ms p99_ms p99.9_ms max_ms sendlag99 server99 cpu% gcs lost pushes)
for rate in $RATE; do
	for mode in push none $PEER; do
		f=$rate.$mode
		server99=-
		[[ $mode == "$PEER" ]] || server99=$(col "$f" 14)
		TABLE+=$'\n'$(printf '%-6s %-5s %8.3f %8.3f %8.3f %8.3f %9.3f %10.3f %9s %6s %5s %6s %7s' "$rate" "$mode" "$(col "$f" 3)" "$(col "$f" 4)" \
			"$(col "$f" 5)" "$(col "$f" 6)" "$(col "$f" 7)" "$(col "$f" 8)" "$server99" "$(col "$f" 10)" "$(sum "$f" 11)" "$(sum "$f" 2)" "$(sum "$f" 12)")
	done
	# The ratio of the medians, and the spread of the ratio within each round (runs next to each other).
	rr=$(paste -d' ' "$TMP/runs.$rate.push" "$TMP/runs.$rate.none" | awk '{ print $5 / $19 }' | sort -g |
		awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
	TABLE+=$'\n'$(awk -v a="$(col "$rate.push" 5)" -v b="$(col "$rate.none" 5)" -v rr="$rr" -v rate="$rate" \
		'BEGIN { printf "rate %d: p99(push)/p99(none) = %.2f (rounds %s)", rate, a / b, rr }')
	srr=$(paste -d' ' "$TMP/runs.$rate.push" "$TMP/runs.$rate.none" | awk '$14 != "-" && $28 > 0 { print $14 / $28 }' | sort -g |
		awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.2f-%.2f", lo, hi; else printf "-" }')
	TABLE+=$'\n'$(awk -v a="$(col "$rate.push" 14)" -v b="$(col "$rate.none" 14)" -v rr="$srr" -v rate="$rate" \
		'BEGIN { if (b > 0) printf "rate %d: server p99(push)/p99(none) = %.2f (rounds %s): the server\x27s own latency, without the client\x27s core", rate, a / b, rr }')
	if [[ -n $PEER ]]; then
		TABLE+=$'\n'$(awk -v a="$(col "$rate.none" 5)" -v b="$(col "$rate.$PEER" 5)" -v rate="$rate" -v peer="$PEER" \
			'BEGIN { printf "rate %d: p99(none)/p99(%s) = %.2f (the same client and core serving a C server)", rate, peer, a / b }')
	fi
done
TABLE+=$'\n'"medians over rounds; lost, gcs (the server's garbage collections) and pushes summed"
echo "$TABLE" | tee -a "$RESULTS"

# The traced runs: the trace covers the middle of the run, after the warmup.
if [[ $TRACE == 1 ]]; then
	rate=${RATE%% *}
	for mode in push none; do
		start_run "${MODE_INTERVAL[$mode]}"
		(sleep $((WARMUP + 1)) && curl -s -o "$TMP/trace.$mode" \
			"http://127.0.0.1:$PPROF_PORT/debug/pprof/trace?seconds=$(((DURATION + 1) / 2))") &
		tracer=$!
		run_load "$DURATION" "$rate" "$TMP/run.out"
		wait "$tracer" || true
		stop_run
		{
			echo "traced run, $mode at $rate q/s (not among the measured): p99 $(field p99 "$TMP/run.out") ms"
			"$TMP/tracegaps" -show 5 <"$TMP/trace.$mode" 2>&1
		} | tee -a "$RESULTS"
	done
fi
if [[ $RECORD == 1 ]]; then
	mkdir -p "$ROOT/bench/results"
	out=$ROOT/bench/results/$(date +%F)-push-latency.txt
	{
		cat "$RESULTS"
		echo
	} >>"$out"
	echo "results appended to $out" >&2
fi
