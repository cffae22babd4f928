// A separate module, so that golang.org/x/exp stays out of the main module. Built by
// bench/push-latency.sh (TRACE=1).
module meshdns-bench/tracegaps

go 1.26.0

require golang.org/x/exp v0.0.0-20261113113407-e3970619a1a4
