// Package need skips tests whose prerequisites are missing from the machine, the same way everywhere:
// the skip names what is missing, a REQUIRE variable (set by CI) turns it into a failure, and each skip
// is appended to $MESHDNS_SKIP_LOG so that `make test` can say at its end what did not run and how to
// run it, and a skip-heavy green run is not taken for the whole suite.
package need

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// A Kind is one class of prerequisite: what it is, how to get it, and the variable that makes its
// absence a failure.
type Kind struct {
	What    string // "the real control planes"
	How     string // what a user runs to have it
	Require string // MESHDNS_REQUIRE_... : "1" fails instead of skipping
}

var (
	// Stack is the real etcd, kube-apiserver and istiod built by test/realstack/build.sh.
	Stack = Kind{
		What:    "the real control planes",
		How:     "bash test/realstack/build.sh, then make test",
		Require: "MESHDNS_REQUIRE_STACK",
	}
	// Tools are the client tools and root the integration tests drive (dig, dnsperf, ip, iptables...).
	Tools = Kind{
		What:    "root or client tools (dig, dnsperf, ip, iptables, nft, wget, systemd-analyze, containerd, runc, busybox-static)",
		How:     "as root, apt-get install bind9-dnsutils dnsperf iproute2 iptables nftables wget systemd containerd runc busybox-static, then make test",
		Require: "MESHDNS_REQUIRE_TOOLS",
	}
)

// Skip skips t for want of k (reason says exactly what is missing), or fails it when k's REQUIRE
// variable is 1. Call it with the test's own t, never a parent's from inside a subtest.
func Skip(t testing.TB, k Kind, reason string) {
	t.Helper()
	if os.Getenv(k.Require) == "1" {
		t.Fatalf("%s=1: %s", k.Require, reason)
	}
	record(t.Name(), k)
	t.Skipf("skipping: %s", reason)
}

// Tool returns the path of a command line tool, or skips t (see Skip) when it is not installed.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Skip(t, Tools, name+" not installed")
	}
	return path
}

// Root skips t (see Skip) unless the test runs as root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, Tools, why+" need root")
	}
}

// record appends "what<TAB>how<TAB>test" to $MESHDNS_SKIP_LOG; O_APPEND keeps lines whole when
// several test binaries write at once.
func record(test string, k Kind) {
	path := os.Getenv("MESHDNS_SKIP_LOG")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\t%s\n", k.What, k.How, test)
}
