package test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/types/known/anypb"
)

// flappingUpstream is a DNS server behind forward that is up for up, then gone for down, again and
// again: forwarded names then fail, mesh names must not.
func flappingUpstream(t *testing.T, up, down time.Duration) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { _ = w.WriteMsg(upstreamReply(r)) })
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			srv := &dns.Server{Addr: addr, Net: "udp", Handler: handler}
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go func() { _ = srv.ListenAndServe() }()
			select {
			case <-started:
			case <-time.After(2 * time.Second):
			}
			select {
			case <-stop:
				_ = srv.Shutdown()
				return
			case <-time.After(up):
			}
			_ = srv.Shutdown()
			select {
			case <-stop:
				return
			case <-time.After(down):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return addr
}

// udpRcvbufErrors is the host's count of UDP datagrams dropped because a socket's receive buffer was
// full (/proc/net/snmp): where a lost query went when the server fell behind.
func udpRcvbufErrors(t *testing.T) int {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, name := range header {
			if name == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	t.Fatal("no Udp RcvbufErrors in /proc/net/snmp")
	return 0
}

// dnsperfResult is what one dnsperf run reports.
type dnsperfResult struct {
	sent, completed, lost int
	rcodes                map[string]int
	latencies             []float64 // seconds, answered queries (with -v)
}

var (
	dnsperfCount = regexp.MustCompile(`Queries (sent|completed|lost):\s+(\d+)`)
	dnsperfCodes = regexp.MustCompile(`Response codes:\s+(.*)`)
	dnsperfCode  = regexp.MustCompile(`([A-Z]+) (\d+) \(`)
)

func parseDnsperf(out string) dnsperfResult {
	r := dnsperfResult{rcodes: map[string]int{}}
	for _, m := range dnsperfCount.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "sent":
			r.sent = n
		case "completed":
			r.completed = n
		case "lost":
			r.lost = n
		}
	}
	if m := dnsperfCodes.FindStringSubmatch(out); m != nil {
		for _, c := range dnsperfCode.FindAllStringSubmatch(m[1], -1) {
			n, _ := strconv.Atoi(c[2])
			r.rcodes[c[1]] = n
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == ">" && f[1] != "T" {
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				r.latencies = append(r.latencies, v)
			}
		}
	}
	slices.Sort(r.latencies)
	return r
}

func (r dnsperfResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return time.Duration(r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))] * float64(time.Second))
}

// TestSoak runs dnsperf at a fixed rate against the binary for MESHDNS_SOAK (a duration; `make soak`
// sets it) with mesh names and forwarded names, while the name table changes every second from both
// sources (a file rewritten, an NDS push) and the upstream behind forward flaps. Mesh names must get
// no SERVFAIL and lose no answer; memory must stay flat. The figures go to the log and, with
// MESHDNS_RESULTS, to a file there.
func TestSoak(t *testing.T) {
	duration, err := time.ParseDuration(os.Getenv("MESHDNS_SOAK"))
	if err != nil {
		t.Skip("set MESHDNS_SOAK to a duration (make soak) to run the soak test")
	}
	requireTool(t, "dnsperf")
	const names = 1000
	dir := t.TempDir()

	// The NDS side: a changed table every second, every name kept, one address in a hundred moved.
	srv := ndstest.New(t, nil)
	ndsTable := func(round int) []table.Entry {
		out := make([]table.Entry, names)
		for i := range out {
			ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			if i%100 == round%100 {
				ip = netip.AddrFrom4([4]byte{10, 2, byte(round >> 8), byte(round)})
			}
			out[i] = table.Entry{Host: fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i%10), Addrs: []netip.Addr{ip}, Registry: table.RegistryKubernetes}
		}
		return out
	}
	var pushMu sync.Mutex
	round := 0
	push := func() *discovery.DiscoveryResponse {
		pushMu.Lock()
		defer pushMu.Unlock()
		round++
		return &discovery.DiscoveryResponse{TypeUrl: nds.TypeURL, VersionInfo: strconv.Itoa(round), Nonce: strconv.Itoa(round),
			Resources: []*anypb.Any{{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable(ndsTable(round))}}}
	}
	srv.OnOpen = func() any { return push() }

	// The file side: rewritten (by rename) every second.
	tablePath := filepath.Join(dir, "table.yaml")
	writeTable := func(round int) {
		var b strings.Builder
		b.WriteString("table:\n")
		for i := range names {
			fmt.Fprintf(&b, "  ext-%d.example.com: {ips: [240.1.%d.%d], registry: External}\n", i, (i+round)%250, i%250)
		}
		tmp := tablePath + ".tmp"
		if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
		if err := os.Rename(tmp, tablePath); err != nil {
			t.Error(err)
		}
	}
	writeTable(0)

	upstream := flappingUpstream(t, 3*time.Second, 2*time.Second)
	port, mport := freePort(t), freePort(t)
	addr := "127.0.0.1:" + port
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s
        file %s 1s
        fallthrough
    }
    forward . %s {
        max_fails 0
    }
    prometheus 127.0.0.1:%s
}
`, port, srv.Addr, tablePath, upstream, mport)
	// On failure the server's log is printed at cleanup; the report is repeated after it, so the
	// figures that failed are at the end of the output.
	var report strings.Builder
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("\n" + report.String())
		}
	})
	s := startCoreDNS(t, dir, corefile, addr)
	resolvesTo(t, addr, "svc-0.ns-0.svc.cluster.local.", dns.TypeA, "10.1.0.0") // moved only by the 100th push

	var mesh, forwarded strings.Builder
	for i := range names {
		fmt.Fprintf(&mesh, "svc-%d.ns-%d.svc.cluster.local A\next-%d.example.com A\nsvc-%d.ns-%d.svc.cluster.local AAAA\n", i, i%10, i, i, i%10)
		fmt.Fprintf(&forwarded, "fwd-%d.example.org A\n", i)
	}
	meshFile, fwdFile := filepath.Join(dir, "mesh.txt"), filepath.Join(dir, "forwarded.txt")
	if err := os.WriteFile(meshFile, []byte(mesh.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fwdFile, []byte(forwarded.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// The changes, every second, for the whole run.
	stop := make(chan struct{})
	changes := make(chan int, 1)
	go func() {
		n := 0
		defer func() { changes <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			n++
			writeTable(n)
			srv.Pushes <- push()
		}
	}()

	// Anonymous memory (heap, stacks) is what a leak grows; the file-backed part of the resident set
	// is the binary's pages being touched for the first time, shared and reclaimable.
	rssStart, anonStart := procStatus(t, s.cmd.Process.Pid, "VmRSS"), procStatus(t, s.cmd.Process.Pid, "RssAnon")
	secs := strconv.Itoa(max(1, int(duration.Seconds())))
	run := func(file, rate string, verbose bool, out *string, wg *sync.WaitGroup) {
		defer wg.Done()
		args := []string{"-s", "127.0.0.1", "-p", port, "-d", file, "-l", secs, "-Q", rate, "-c", "4", "-q", "2000", "-t", "2"}
		if verbose {
			args = append(args, "-v")
		}
		b, err := exec.Command("dnsperf", args...).CombinedOutput()
		if err != nil {
			t.Errorf("dnsperf: %v\n%s", err, b)
		}
		*out = string(b)
	}
	dropsStart := udpRcvbufErrors(t)
	var meshOut, fwdOut string
	var wg sync.WaitGroup
	wg.Add(2)
	go run(meshFile, "4000", true, &meshOut, &wg)
	go run(fwdFile, "500", false, &fwdOut, &wg)
	wg.Wait()
	close(stop)
	nChanges := <-changes
	drops := udpRcvbufErrors(t) - dropsStart
	rssEnd, anonEnd := procStatus(t, s.cmd.Process.Pid, "VmRSS"), procStatus(t, s.cmd.Process.Pid, "RssAnon")
	e := &meshEnv{metrics: "127.0.0.1:" + mport}
	applied := e.metric(t, `coredns_meshdns_table_updates_total{result="applied",server="dns://127.0.0.1:`+port+`",source="nds"}`) +
		e.metric(t, `coredns_meshdns_table_updates_total{result="applied",server="dns://127.0.0.1:`+port+`",source="file"}`)

	m, f := parseDnsperf(meshOut), parseDnsperf(fwdOut)
	fmt.Fprintf(&report, "soak %v: %d table changes from each source (%v updates applied), upstream up 3 s / down 2 s\n", duration, nChanges, applied)
	fmt.Fprintf(&report, "%-10s %9s %9s %6s %10s %10s  %s\n", "names", "sent", "answered", "lost", "p50", "p99", "response codes")
	for _, r := range []struct {
		name string
		res  dnsperfResult
	}{{"mesh", m}, {"forwarded", f}} {
		var codes []string
		for c, n := range r.res.rcodes {
			codes = append(codes, fmt.Sprintf("%s %d", c, n))
		}
		slices.Sort(codes)
		fmt.Fprintf(&report, "%-10s %9d %9d %6d %10v %10v  %s\n", r.name, r.res.sent, r.res.completed, r.res.lost,
			r.res.percentile(0.5), r.res.percentile(0.99), strings.Join(codes, ", "))
	}
	fmt.Fprintf(&report, "UDP datagrams dropped by full receive buffers on the host: %d\n", drops)
	fmt.Fprintf(&report, "resident memory: %d MiB at the start, %d MiB at the end (anonymous: %d MiB, %d MiB)\n",
		rssStart/1024, rssEnd/1024, anonStart/1024, anonEnd/1024)
	t.Log("\n" + report.String())
	recordResult(t, "soak", report.String())

	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintln(&report, "FAIL: "+msg)
		t.Error(msg)
	}
	if m.sent == 0 || m.completed != m.sent || m.lost != 0 || m.rcodes["SERVFAIL"] != 0 || m.rcodes["NOERROR"] != m.completed {
		fail("mesh names: sent %d, answered %d, lost %d, rcodes %v: want every one answered NOERROR", m.sent, m.completed, m.lost, m.rcodes)
	}
	if f.sent == 0 {
		fail("no forwarded names sent")
	}
	if nChanges < int(duration.Seconds())-2 || applied < float64(nChanges) {
		fail("%d changes made, %v applied", nChanges, applied)
	}
	if anonEnd > anonStart*3/2+20*1024 {
		fail("anonymous memory grew from %d to %d KiB", anonStart, anonEnd)
	}
}
