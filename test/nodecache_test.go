package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/need"
)

// netns is a network namespace made for one test, with loopback up; it is deleted at the end.
type netns struct {
	t    *testing.T
	name string
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	need.Root(t, "network namespace tests")
	requireTool(t, "ip")
	requireTool(t, "iptables")
	requireTool(t, "dig")
	n := &netns{t: t, name: fmt.Sprintf("meshdns-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.name).Run() })
	n.run("ip", "link", "set", "lo", "up")
	return n
}

// run runs a command inside the namespace and returns its output, failing the test on error.
func (n *netns) run(args ...string) string {
	n.t.Helper()
	out, err := n.try(args...)
	if err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

func (n *netns) try(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	return string(out), err
}

// rulesFor lists the iptables (ip6tables for an IPv6 address) rules, raw and filter, that mention addr.
func (n *netns) rulesFor(addr string) []string {
	cmd := "iptables"
	if strings.Contains(addr, ":") {
		cmd = "ip6tables"
	}
	var out []string
	for _, table := range []string{"raw", "filter"} {
		for _, line := range strings.Split(n.run(cmd, "-t", table, "-S"), "\n") {
			if strings.Contains(line, addr+"/") {
				out = append(out, table+" "+line)
			}
		}
	}
	return out
}

// waitRules waits until addr has want iptables rules: a start adds them in the background, after
// the interface, so as not to delay serving.
func (n *netns) waitRules(addr string, want int) {
	n.t.Helper()
	n.waitRulesIn("iptables", addr, want)
}

// waitRulesIn is waitRules for the firewall of mode (iptables or nftables).
func (n *netns) waitRulesIn(mode, addr string, want int) {
	n.t.Helper()
	eventually(n.t, 10*time.Second, fmt.Sprintf("%d %s rules for %s", want, mode, addr), func() error {
		if got := n.rulesIn(mode, addr); len(got) != want {
			return fmt.Errorf("%d rules:\n%s", len(got), strings.Join(got, "\n"))
		}
		return nil
	})
}

// dig asks the resolver at server inside the namespace and returns the short answer.
func (n *netns) dig(server, name string) (string, error) {
	out, err := n.try("dig", "@"+server, name, "+short", "+time=1", "+tries=1")
	return strings.TrimSpace(out), err
}

// startIn starts the binary inside the namespace and waits until it answers on server.
func (n *netns) startIn(dir, corefile, server string) *exec.Cmd {
	n.t.Helper()
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		n.t.Fatal(err)
	}
	return n.startArgs(dir, server, nil, "-conf", path)
}

// startArgs starts the binary inside the namespace with args and extra environment, and waits until
// it answers on server.
func (n *netns) startArgs(dir, server string, env []string, args ...string) *exec.Cmd {
	n.t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, binary}, args...)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	n.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if n.t.Failed() {
			n.t.Logf("coredns output:\n%s", out)
		}
	})
	eventually(n.t, 20*time.Second, "the resolver answering inside the namespace", func() error {
		select {
		case err := <-done:
			n.t.Fatalf("coredns exited: %v\n%s", err, out)
		default:
		}
		_, err := n.dig(server, "startup.probe.invalid.")
		return err
	})
	return cmd
}

// stop sends SIGTERM and waits for the process to end.
func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the process to exit", func() error {
		if err := cmd.Process.Signal(syscall.Signal(0)); err == nil {
			return fmt.Errorf("still running")
		}
		return nil
	})
}

// TestNodeCache runs the node-local role in a network namespace: the interface holding the local
// address and the iptables rules appear, the resolver answers on the address, the periodic check puts
// back what is removed, a reload keeps everything, the final shutdown removes it, a start on a host
// left dirty adds nothing twice, and skip_teardown leaves everything in place.
func TestNodeCache(t *testing.T) {
	ns := newNetns(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nametable.json"), []byte(`{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.10.12"], "registry": "Kubernetes"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const local = "169.254.20.10"
	corefile := func(extra string) string {
		return fmt.Sprintf(`.:53 {
    bind %s
    nodecache {
        check_interval 200ms
%s    }
    meshdns {
        file nametable.json
    }
    health %s:8080
}
`, local, extra, local)
	}
	wantRules := 14 // NOTRACK and ACCEPT, UDP and TCP, both directions, the node's own queries, health

	cmd := ns.startIn(dir, corefile(""), local)
	if out := ns.run("ip", "-br", "addr", "show", "nodelocaldns"); !strings.Contains(out, local+"/32") {
		t.Errorf("interface: %s", out)
	}
	ns.waitRules(local, wantRules)
	if got, err := ns.dig(local, "reviews.bookinfo.svc.cluster.local."); err != nil || got != "10.96.10.12" {
		t.Errorf("query to %s inside the namespace: %q %v", local, got, err)
	}
	if out, err := ns.try("wget", "-q", "-O-", "http://"+local+":8080/health"); err == nil && !strings.Contains(out, "OK") {
		t.Errorf("health: %q", out)
	}

	// Another agent flushes a rule and an operator removes the address: both come back.
	ns.run("iptables", "-t", "raw", "-D", "PREROUTING", "-p", "udp", "-d", local, "--dport", "53", "-j", "NOTRACK")
	ns.run("ip", "addr", "del", local+"/32", "dev", "nodelocaldns")
	eventually(t, 5*time.Second, "the rule and the address put back", func() error {
		if got := ns.rulesFor(local); len(got) != wantRules {
			return fmt.Errorf("%d rules", len(got))
		}
		if out := ns.run("ip", "-br", "addr", "show", "nodelocaldns"); !strings.Contains(out, local) {
			return fmt.Errorf("interface: %s", out)
		}
		return nil
	})

	// A reload (SIGUSR1) keeps everything and goes on answering.
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if got := ns.rulesFor(local); len(got) != wantRules {
		t.Errorf("after a reload: %d rules", len(got))
	}
	if got, err := ns.dig(local, "reviews.bookinfo.svc.cluster.local."); err != nil || got != "10.96.10.12" {
		t.Errorf("after a reload: %q %v", got, err)
	}

	// The final shutdown removes it all.
	stop(t, cmd)
	if got := ns.rulesFor(local); len(got) != 0 {
		t.Errorf("after shutdown: %d rules left:\n%s", len(got), strings.Join(got, "\n"))
	}
	if out, err := ns.try("ip", "link", "show", "nodelocaldns"); err == nil {
		t.Errorf("after shutdown the interface is still there: %s", out)
	}

	// A host left dirty: the interface and two of the rules are there already. Nothing is doubled.
	ns.run("ip", "link", "add", "nodelocaldns", "type", "bridge")
	ns.run("iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "-d", local, "--dport", "53", "-j", "NOTRACK")
	ns.run("iptables", "-t", "filter", "-A", "INPUT", "-p", "udp", "-d", local, "--dport", "53", "-j", "ACCEPT")
	cmd = ns.startIn(dir, corefile("        skip_teardown\n"), local)
	ns.waitRules(local, wantRules) // and no more: nothing doubled on a dirty host
	// With skip_teardown, the shutdown leaves them for the next start (an upgrade without a gap).
	stop(t, cmd)
	if got := ns.rulesFor(local); len(got) != wantRules {
		t.Errorf("skip_teardown: %d rules left, want all %d", len(got), wantRules)
	}
	if _, err := ns.try("ip", "link", "show", "nodelocaldns"); err != nil {
		t.Errorf("skip_teardown: the interface is gone")
	}
}

// TestNodeCacheCompat runs the binary as NodeLocal DNSCache's DaemonSet runs k8s-dns-node-cache: its
// flags and its Corefile template with pillars. The Corefile is generated, the node-local setup is
// made for both addresses, and the resolver answers on them.
func TestNodeCacheCompat(t *testing.T) {
	ns := newNetns(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nametable.json"), []byte(`{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.10.12"], "registry": "Kubernetes"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "Corefile.base")
	template := `cluster.local:53 {
    errors
    reload
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    meshdns {
        file ` + filepath.Join(dir, "nametable.json") + `
        fallthrough
    }
    forward . __PILLAR__CLUSTER__DNS__ {
        force_tcp
    }
    health __PILLAR__LOCAL__DNS__:8080
}
`
	if err := os.WriteFile(base, []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	corefile := filepath.Join(dir, "Corefile")
	cmd := ns.startArgs(dir, "169.254.20.10", []string{"KUBE_DNS_UPSTREAM_SERVICE_HOST=10.96.0.11"},
		"-localip", "169.254.20.10,10.96.0.10", "-conf", corefile, "-upstreamsvc", "kube-dns-upstream",
		"-basecorefile", base, "-corefile", corefile, "-syncinterval", "1s")
	generated, err := os.ReadFile(corefile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(generated), "nodecache 169.254.20.10 10.96.0.10 {") || !strings.Contains(string(generated), "forward . 10.96.0.11 {") {
		t.Errorf("generated Corefile:\n%s", generated)
	}
	for _, addr := range []string{"169.254.20.10", "10.96.0.10"} {
		if got, err := ns.dig(addr, "reviews.bookinfo.svc.cluster.local."); err != nil || got != "10.96.10.12" {
			t.Errorf("query to %s: %q %v", addr, got, err)
		}
		ns.waitRules(addr, 14)
	}
	stop(t, cmd)
	if got := ns.rulesFor("169.254.20.10"); len(got) != 0 {
		t.Errorf("after shutdown: %d rules left", len(got))
	}
}

// TestNodeCacheReadme starts every Corefile example of the nodecache README in a network namespace
// (the name table file replaced by a test one): the setup is made for every address it names, and
// the resolver answers mesh names on each of them.
func TestNodeCacheReadme(t *testing.T) {
	readme := readFile(t, "../plugin/nodecache/README.md")
	blocks := regexp.MustCompile("(?s)~~~ corefile\n(.*?)~~~").FindAllStringSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("no corefile example in the nodecache README")
	}
	fileLine := regexp.MustCompile(`(?m)^(\s*file )(\S+)`)
	for i, b := range blocks {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ns := newNetns(t)
			dir := t.TempDir()
			table := filepath.Join(dir, "nametable.json")
			if err := os.WriteFile(table, []byte(`{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.10.12"], "registry": "Kubernetes"}}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			corefile := fileLine.ReplaceAllString(b[1], "${1}"+table)
			m := regexp.MustCompile(`(?m)^\s*nodecache ([^{\n]*)`).FindStringSubmatch(corefile)
			if m == nil {
				t.Fatalf("example %d has no nodecache line with addresses:\n%s", i, corefile)
			}
			addrs := strings.Fields(m[1])
			mode := "iptables" // what auto takes here: no kube-proxy nftables tables, an iptables command
			if r := regexp.MustCompile(`(?m)^\s*rules (\w+)`).FindStringSubmatch(corefile); r != nil && r[1] != "auto" {
				mode = r[1]
			}
			if mode == "nftables" {
				requireTool(t, "nft")
			}
			ns.startIn(dir, corefile, addrs[0])
			for _, addr := range addrs {
				if got, err := ns.dig(addr, "reviews.bookinfo.svc.cluster.local."); err != nil || got != "10.96.10.12" {
					t.Errorf("query to %s: %q %v", addr, got, err)
				}
				ns.waitRulesIn(mode, addr, 14)
			}
		})
	}
}

// TestHelperHoldAddress is not a test: TestNodeCacheAddressHeld runs it inside a namespace, where it
// holds an address without sharing it, as a resolver that is not ours would.
func TestHelperHoldAddress(t *testing.T) {
	addr := os.Getenv("MESHDNS_HOLD_ADDR")
	if addr == "" {
		t.Skip("helper process only")
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Println("holding", addr)
	time.Sleep(time.Minute)
}

// TestNodeCacheAddressHeld starts the node-local resolver while something else holds its address:
// it does not exit (no crash loop), it logs who holds the address, and it serves as soon as the
// address is free.
func TestNodeCacheAddressHeld(t *testing.T) {
	ns := newNetns(t)
	dir := t.TempDir()
	const local = "169.254.20.10"
	ns.run("ip", "link", "add", "nodelocaldns", "type", "bridge") // this kernel may have no dummy interfaces
	ns.run("ip", "addr", "add", local+"/32", "dev", "nodelocaldns")
	ns.run("ip", "link", "set", "nodelocaldns", "up")
	holder := exec.Command("ip", "netns", "exec", ns.name, os.Args[0], "-test.run=^TestHelperHoldAddress$")
	// MESHDNS_BIN: the helper's TestMain must not build the binary again (it takes longer than the
	// wait below on a cold build cache).
	holder.Env = append(os.Environ(), "MESHDNS_HOLD_ADDR="+local+":53", "MESHDNS_BIN="+binary)
	holderOut := &syncBuffer{}
	holder.Stdout, holder.Stderr = holderOut, holderOut
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	eventually(t, 10*time.Second, "the holder bound", func() error {
		if !strings.Contains(holderOut.String(), "holding") {
			return fmt.Errorf("holder: %q", holderOut.String())
		}
		return nil
	})

	corefile := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(corefile, []byte(rolloutCorefile(writeRolloutTable(t, dir), "iptables")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command("ip", "netns", "exec", ns.name, binary, "-conf", corefile)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-exited }()
	eventually(t, 10*time.Second, "the conflict logged", func() error {
		if !strings.Contains(out.String(), local+":53 is held by pid ") {
			return fmt.Errorf("log so far:\n%s", out)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	select {
	case err := <-exited:
		t.Fatalf("the resolver exited while its address was held: %v\n%s", err, out)
	default:
	}
	holder.Process.Kill()
	holder.Wait()
	eventually(t, 10*time.Second, "answers once the address is free", func() error {
		got, err := ns.dig(local, "reviews.bookinfo.svc.cluster.local.")
		if err != nil || got != "10.96.10.12" {
			return fmt.Errorf("%q %v", got, err)
		}
		return nil
	})
}
