# Shared by the bench scripts: pinning servers and clients to separate cores. Source it.

# setup_pinning SCRIPT: pins only with taskset and two cores; without them the numbers are noisier
# but still comparable, and SCRIPT says so.
setup_pinning() {
	PIN=0
	if command -v taskset >/dev/null && (($(nproc) >= 2)); then
		PIN=1
	else
		echo "$1: no taskset or fewer than 2 cores: not pinning" >&2
	fi
}

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

# write_nsd_conf DIR PORT COUNT: DIR/nsd.conf for NSD serving the zone cluster.local from
# DIR/cluster.local.zone on 127.0.0.1:PORT with COUNT server processes (on SO_REUSEPORT sockets when
# more than one): in the foreground, without privilege drop, chroot or database (the zone read from
# its file), its state files in DIR, minimal responses (no NS in the authority of answers, as the
# other servers measured) and response rate limiting off (on by default at 200 qps a source: a
# benchmark's client is one source).
write_nsd_conf() {
	local dir=$1 port=$2 count=$3
	cat >"$dir/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1
    port: $port
    do-ip6: no
    server-count: $count
    reuseport: $( ((count > 1)) && echo yes || echo no)
    username: ""
    chroot: ""
    zonesdir: "$dir"
    database: ""
    pidfile: "$dir/nsd.pid"
    zonelistfile: "$dir/nsd.zonelist"
    xfrdfile: "$dir/nsd.xfrd"
    xfrdir: "$dir"
    verbosity: 1
    minimal-responses: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: cluster.local
    zonefile: cluster.local.zone
EOF
}
