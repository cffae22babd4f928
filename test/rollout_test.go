package test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/pkg/handover"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// The node-local addresses of the rollout tests: NodeLocal DNSCache's IPv4 one, and an IPv6 one
// beside it as a dual-stack node has.
const (
	localV4 = "169.254.20.10"
	localV6 = "fd00::a9fe:140a"
)

// rolloutCorefile is the node-local Corefile of deploy/kubernetes with nodecache's defaults (check
// interval, lameduck) but for the firewall (iptables or nftables), and a name table file instead of
// a control plane.
func rolloutCorefile(table, rules string) string {
	return fmt.Sprintf(`.:53 {
    errors
    bind %[1]s %[2]s
    nodecache %[1]s %[2]s {
        rules %[4]s
    }
    meshdns {
        file %[3]s
    }
    prometheus 127.0.0.1:9253
    health %[1]s:8080
    ready %[1]s:8181 {
        monitor continuously
    }
}
`, localV4, localV6, table, rules)
}

// rulesIn lists the node-local rules for addr in the firewall of mode.
func (n *netns) rulesIn(mode, addr string) []string {
	if mode == "iptables" {
		return n.rulesFor(addr)
	}
	out, err := n.try("nft", "list", "table", "inet", "nodelocaldns")
	if err != nil {
		return nil // no table: no rules
	}
	var rules []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, addr+" ") {
			rules = append(rules, strings.TrimSpace(line))
		}
	}
	return rules
}

// rolloutModes runs f for each firewall nodecache writes, each in a namespace of its own.
func rolloutModes(t *testing.T, f func(t *testing.T, ns *netns, mode string)) {
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) {
			ns := newNetns(t)
			requireTool(t, "ip6tables")
			if mode == "nftables" {
				requireTool(t, "nft")
			}
			f(t, ns, mode)
		})
	}
}

// stubLoad asks the node-local addresses at a fixed rate from inside a network namespace, as a stub
// resolver does: a fresh socket per query, so a send error (the address gone) is counted rather than
// hidden, a timeout of two seconds (glibc's first try waits five; a lost datagram never comes, a late
// one on a loaded machine may), and an answer that is not the table's counts as failed too. Unlike
// loadGen (one query at a time per worker) it is open-loop: an outage does not slow it down, and each
// query's send time is kept, which gives the longest outage.
type stubLoad struct {
	mu      sync.Mutex
	results []stubResult
	errs    map[string]int
	wg      sync.WaitGroup
}

type stubResult struct {
	sent time.Time
	ok   bool
}

func startStubLoad(t *testing.T, ns *netns, rate int, stop <-chan struct{}) *stubLoad {
	l := &stubLoad{errs: map[string]int{}}
	servers := []string{net.JoinHostPort(localV4, "53"), net.JoinHostPort(localV6, "53")}
	nsFile, err := os.Open("/run/netns/" + ns.name)
	if err != nil {
		t.Fatal(err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer nsFile.Close()
		// This goroutine's thread enters the namespace for good (a locked thread ends with its
		// goroutine), so every socket it opens is the namespace's; replies are read anywhere.
		runtime.LockOSThread()
		if err := unix.Setns(int(nsFile.Fd()), unix.CLONE_NEWNET); err != nil {
			l.fail(time.Now(), "setns: "+err.Error())
			return
		}
		// Every millisecond, send what the rate owes by now: a ticker per query would drop the
		// ticks it is late for, and the rate with them.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		begin := time.Now()
		for i := 0; ; {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for due := int(time.Since(begin).Seconds() * float64(rate)); i < due; i++ {
				l.ask(servers[i%len(servers)], uint16(i))
			}
		}
	}()
	return l
}

func (l *stubLoad) ask(server string, id uint16) {
	sent := time.Now()
	c, err := net.Dial("udp", server)
	if err != nil {
		l.fail(sent, "dial: "+errText(err))
		return
	}
	m := new(dns.Msg)
	m.SetQuestion("reviews.bookinfo.svc.cluster.local.", dns.TypeA)
	m.Id = id
	wire, _ := m.Pack()
	if _, err := c.Write(wire); err != nil {
		c.Close()
		l.fail(sent, "send: "+errText(err))
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer c.Close()
		c.SetReadDeadline(sent.Add(2 * time.Second))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			l.fail(sent, "read: "+errText(err))
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil || r.Id != id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			l.fail(sent, fmt.Sprintf("wrong answer: rcode %s, %d records", dns.RcodeToString[r.Rcode], len(r.Answer)))
			return
		}
		l.record(stubResult{sent: sent, ok: true})
	}()
}

// errText drops the addresses from an error, so that failures group by kind.
func errText(err error) string {
	if op, ok := err.(*net.OpError); ok {
		if op.Timeout() {
			return "timeout"
		}
		return op.Err.Error()
	}
	return err.Error()
}

func (l *stubLoad) fail(sent time.Time, why string) {
	l.mu.Lock()
	l.errs[why]++
	l.mu.Unlock()
	l.record(stubResult{sent: sent})
}

func (l *stubLoad) record(r stubResult) {
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

// summary waits for every query's answer and reports the count, the failures and the longest
// outage: the span from the first to the last query of a run of failures with no success between.
func (l *stubLoad) summary() (total, failed int, outage time.Duration, why string) {
	total, failed, outage, _, why = l.outage()
	return total, failed, outage, why
}

// outage is summary with the time the longest outage began.
func (l *stubLoad) outage() (total, failed int, outage time.Duration, began time.Time, why string) {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.results, func(i, j int) bool { return l.results[i].sent.Before(l.results[j].sent) })
	var first time.Time
	for _, r := range l.results {
		switch {
		case r.ok:
			first = time.Time{}
		case first.IsZero():
			first = r.sent
			failed++
			if outage < time.Millisecond { // one lost query: an outage shorter than the interval
				outage, began = time.Millisecond, first
			}
		default:
			failed++
			if d := r.sent.Sub(first); d > outage {
				outage, began = d, first
			}
		}
	}
	var kinds []string
	for k, n := range l.errs {
		kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(kinds)
	return len(l.results), failed, outage, began, strings.Join(kinds, ", ")
}

// servesUDP reports whether the process pid has a UDP socket bound to addr:53 in its namespace:
// what a rollout waits for before it stops the old instance.
func servesUDP(pid int, addr string) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	want := netip.AddrPortFrom(ip, 53)
	var socks []handover.Socket
	for _, table := range []string{"udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return false
		}
		s, err := handover.ParseTable(f)
		f.Close()
		if err != nil {
			return false
		}
		socks = append(socks, s...)
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		for _, s := range socks {
			if s.Local == want && link == "socket:["+strconv.FormatUint(s.Inode, 10)+"]" {
				return true
			}
		}
	}
	return false
}

// TestRolloutSurgeFirst replaces a node-local resolver as a DaemonSet with maxSurge 1 does, under
// load on both families: the new instance starts beside the old one, and once it serves, the old
// one gets SIGTERM. Not one query may fail, the old one must leave the interface and rules to the
// new one (none doubled), and the last one out must tear everything down.
func TestRolloutSurgeFirst(t *testing.T) {
	rolloutModes(t, testSurgeFirst)
}

func testSurgeFirst(t *testing.T, ns *netns, mode string) {
	dir := t.TempDir()
	table := writeRolloutTable(t, dir)
	corefile := rolloutCorefile(table, mode)

	old := ns.startIn(dir, corefile, localV4)
	for _, a := range []string{localV4, localV6} {
		ns.waitRulesIn(mode, a, 14)
	}
	done := make(chan struct{})
	l := startStubLoad(t, ns, 2000, done)
	time.Sleep(2 * time.Second)

	begin := time.Now()
	next := ns.startIn(t.TempDir(), corefile, localV4)
	eventually(t, 20*time.Second, "the new instance serving both addresses", func() error {
		for _, a := range []string{localV4, localV6} {
			if !servesUDP(next.Process.Pid, a) {
				return fmt.Errorf("not on %s yet", a)
			}
		}
		return nil
	})
	serving := time.Since(begin)
	stop(t, old)
	handed := time.Since(begin)
	time.Sleep(3 * time.Second)
	close(done)
	total, failed, outage, began, why := l.outage()
	if failed > 0 {
		t.Logf("the longest outage began %v after the new instance started; it served after %v, the old one exited after %v",
			began.Sub(begin).Round(time.Millisecond), serving.Round(time.Millisecond), handed.Round(time.Millisecond))
	}
	t.Logf("surge-first, %s: %d queries, %d failed, longest outage %v, handover took %v (%s)", mode, total, failed, outage, handed.Round(time.Millisecond), why)
	recordResult(t, "rollout", fmt.Sprintf("surge-first, %s, 2000 q/s over both families: %d queries, %d failed, longest outage %v (%s)", mode, total, failed, outage, why))
	if failed > 0 {
		t.Errorf("surge-first lost %d of %d queries (%s), longest outage %v", failed, total, why, outage)
	}
	for _, a := range []string{localV4, localV6} {
		if got := ns.rulesIn(mode, a); len(got) != 14 {
			t.Errorf("after the handover, %s has %d rules, want 14:\n%s", a, len(got), strings.Join(got, "\n"))
		}
	}
	if out := ns.run("ip", "-br", "addr", "show", "nodelocaldns"); !strings.Contains(out, localV4) || !strings.Contains(out, localV6) {
		t.Errorf("after the handover the interface holds %s", out)
	}

	// The last one out tears down.
	stop(t, next)
	for _, a := range []string{localV4, localV6} {
		if got := ns.rulesIn(mode, a); len(got) != 0 {
			t.Errorf("after the last instance stopped, %s has %d rules left", a, len(got))
		}
	}
	if out, err := ns.try("ip", "link", "show", "nodelocaldns"); err == nil {
		t.Errorf("after the last instance stopped the interface is still there: %s", out)
	}
}

// TestRolloutDeleteFirst replaces a node-local resolver the other way, as maxUnavailable 1 does: the
// old instance gets SIGTERM and exits (last one out, it tears down), then the new one starts. Queries
// are lost for as long as no instance serves; the test reports that gap beside the time the new
// process takes from its start to its first answer, which bounds it.
func TestRolloutDeleteFirst(t *testing.T) {
	rolloutModes(t, testDeleteFirst)
}

func testDeleteFirst(t *testing.T, ns *netns, mode string) {
	dir := t.TempDir()
	table := writeRolloutTable(t, dir)
	corefile := rolloutCorefile(table, mode)

	old := ns.startIn(dir, corefile, localV4)
	done := make(chan struct{})
	l := startStubLoad(t, ns, 2000, done)
	time.Sleep(2 * time.Second)
	stop(t, old)
	begin := time.Now()
	next := ns.startIn(t.TempDir(), corefile, localV4)
	start := time.Since(begin)
	time.Sleep(3 * time.Second)
	close(done)
	total, failed, outage, why := l.summary()
	t.Logf("delete-first, %s: %d queries, %d failed, longest outage %v; the new process answered %v after its start (%s)",
		mode, total, failed, outage, start.Round(time.Millisecond), why)
	recordResult(t, "rollout", fmt.Sprintf("delete-first, %s, 2000 q/s over both families: %d queries, %d failed, longest outage %v, the new process's start to its first answer %v (%s)",
		mode, total, failed, outage, start.Round(time.Millisecond), why))
	if failed == 0 {
		t.Errorf("delete-first lost no query: the old instance cannot have stopped serving")
	}
	stop(t, next)
}

func writeRolloutTable(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "nametable.json")
	if err := os.WriteFile(path, []byte(`{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.10.12"], "registry": "Kubernetes"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNodeCacheGoodbye follows one instance's SIGTERM: readiness goes false at once, queries are
// still answered through the lameduck period, and then, being the last one out, it tears down.
func TestNodeCacheGoodbye(t *testing.T) {
	ns := newNetns(t)
	requireTool(t, "ip6tables")
	requireTool(t, "wget")
	dir := t.TempDir()
	cmd := ns.startIn(dir, rolloutCorefile(writeRolloutTable(t, dir), "iptables"), localV4)
	ready := func() (string, error) {
		return ns.try("wget", "-q", "-O-", "http://"+localV4+":8181/ready")
	}
	eventually(t, 10*time.Second, "ready", func() error {
		_, err := ready()
		return err
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	eventually(t, time.Second, "readiness false after SIGTERM", func() error {
		if out, err := ready(); err == nil {
			return fmt.Errorf("still ready: %q", out)
		}
		return nil
	})
	for time.Since(signalled) < 4*time.Second { // within the default lameduck of 5s
		if got, err := ns.dig(localV4, "reviews.bookinfo.svc.cluster.local."); err != nil || got != "10.96.10.12" {
			t.Fatalf("%v after SIGTERM, within the lameduck: %q %v", time.Since(signalled).Round(time.Millisecond), got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop(t, cmd)
	if out, err := ns.try("ip", "link", "show", "nodelocaldns"); err == nil {
		t.Errorf("the last instance out left the interface: %s", out)
	}
}
