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
