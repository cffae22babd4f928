package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// batchTable has a name with 60 addresses, whose answer does not fit 512 bytes.
func batchTable(t *testing.T, dir string) string {
	t.Helper()
	example, err := os.ReadFile("../example/nametable.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for i := range 60 {
		ips = append(ips, fmt.Sprintf("%q", fmt.Sprintf("10.1.0.%d", i+1)))
	}
	big := fmt.Sprintf("  big.bookinfo.svc.cluster.local:\n    ips: [%s]\n    registry: Kubernetes\n    shortname: big\n    namespace: bookinfo\n", strings.Join(ips, ", "))
	path := filepath.Join(dir, "nametable.yaml")
	if err := os.WriteFile(path, append(example, big...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func batchCorefile(port, metricsPort, table, upstream, batch, extra string) string {
	return fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    errors%s
    prometheus 127.0.0.1:%s
    meshdns {
        file %s 0
        namespace bookinfo
        fallthrough
        batch_udp %s
    }
    forward . %s
}
`, port, extra, metricsPort, table, batch, upstream)
}

// batchedCount reads coredns_meshdns_batched_udp_datagrams_total{path} from the metrics endpoint.
func batchedCount(t *testing.T, metricsPort, path string) int {
	t.Helper()
	body := metricsBody(t, "127.0.0.1:"+metricsPort)
	re := regexp.MustCompile(`coredns_meshdns_batched_udp_datagrams_total\{path="` + path + `"[^}]*\} (\d+)`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// comparable is a reply with what may differ between two servers taken out: the ID, the SOA serial
// (when each built its table), the order of rotated answers, and which of them a truncated reply
// holds.
func comparable(r *dns.Msg) string {
	sorted := func(rrs []dns.RR) []string {
		var s []string
		for _, rr := range rrs {
			if soa, ok := rr.(*dns.SOA); ok { // the serial is when each server built its table
				c := *soa
				c.Serial = 0
				rr = &c
			}
			s = append(s, rr.String())
		}
		slices.Sort(s)
		return s
	}
	h := r.MsgHdr
	h.Id = 0
	answer := fmt.Sprint(sorted(r.Answer))
	if h.Truncated { // which of the rotated addresses fit is the rotation's
		answer = fmt.Sprintf("%d records", len(r.Answer))
	}
	return fmt.Sprintf("%+v q=%v an=%s ns=%v ex=%v", h, r.Question, answer, sorted(r.Ns), sorted(r.Extra))
}

// The batched UDP path answers exactly as CoreDNS's own path does, over every client; a reload
// under load loses nothing; a plugin above meshdns that sees every query keeps it off.
func TestBatchedUDP(t *testing.T) {
	up := startUpstream(t)
	dir := t.TempDir()
	table := batchTable(t, dir)
	onPort, onMetrics, offPort, offMetrics := freePort(t), freePort(t), freePort(t), freePort(t)
	onAddr, offAddr := "127.0.0.1:"+onPort, "127.0.0.1:"+offPort
	onDir, offDir := filepath.Join(dir, "on"), filepath.Join(dir, "off")
	os.Mkdir(onDir, 0o755)
	os.Mkdir(offDir, 0o755)
	on := startCoreDNS(t, onDir, batchCorefile(onPort, onMetrics, table, up.addr, "on", ""), onAddr)
	startCoreDNS(t, offDir, batchCorefile(offPort, offMetrics, table, up.addr, "off", ""), offAddr)
	if !strings.Contains(on.out.String(), "batched UDP path on for dns://"+onAddr) {
		t.Fatalf("the batched path did not start:\n%s", on.out)
	}

	type question struct {
		name  string
		qtype uint16
		edit  func(*dns.Msg)
	}
	edns := func(size uint16, do bool) func(*dns.Msg) { return func(m *dns.Msg) { m.SetEdns0(size, do) } }
	questions := []question{
		{"productpage.bookinfo.svc.cluster.local.", dns.TypeA, nil},
		{"ProductPage.BookInfo.SVC.cluster.local.", dns.TypeA, edns(1232, false)},
		{"reviews.", dns.TypeA, nil},
		{"reviews.bookinfo.", dns.TypeAAAA, edns(1232, true)}, // NODATA with the SOA
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.RecursionDesired = false }},
		{"big.bookinfo.svc.cluster.local.", dns.TypeA, nil},               // truncated: the chain sets TC
		{"big.bookinfo.svc.cluster.local.", dns.TypeA, edns(4096, false)}, // fits
		{"elsewhere.example.org.", dns.TypeA, nil},                        // forwarded
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeMX, nil},          // other types: the chain
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { // a cookie: the chain echoes it
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		}},
	}
	for _, netw := range []string{"udp", "tcp"} {
		for _, q := range questions {
			m := new(dns.Msg)
			m.SetQuestion(q.name, q.qtype)
			if q.edit != nil {
				q.edit(m)
			}
			c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
			got, _, err := c.Exchange(m, onAddr)
			if err != nil {
				t.Fatalf("%s %s: %v", netw, q.name, err)
			}
			want, _, err := c.Exchange(m, offAddr)
			if err != nil {
				t.Fatalf("%s %s (batch_udp off): %v", netw, q.name, err)
			}
			if comparable(got) != comparable(want) {
				t.Errorf("%s %s %s:\n batched %s\nCoreDNS's %s", netw, q.name, dns.TypeToString[q.qtype], comparable(got), comparable(want))
			}
		}
	}
	if n := batchedCount(t, onMetrics, "answered"); n < 5 {
		t.Errorf("%d questions answered on the batched path, want the 5 it answers over UDP", n)
	}
	if n := batchedCount(t, offMetrics, "answered"); n != -1 {
		t.Errorf("batch_udp off: %d answered on a batched path", n)
	}

	// Real clients: the Go resolver and dig.
	addrs, err := goResolver(onAddr).LookupHost(t.Context(), "productpage.bookinfo.svc.cluster.local")
	if err != nil || len(addrs) != 1 || addrs[0] != "10.96.10.10" {
		t.Errorf("Go resolver: %v %v", addrs, err)
	}
	requireTool(t, "dig")
	if out, err := execCommand("dig", "+nocookie", "+short", "-p", onPort, "@127.0.0.1", "reviews").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "10.96.10.12" {
		t.Errorf("dig: %q %v", out, err)
	}

	// Reloads while clients ask: every question answered, by the old instance or the new.
	var asked, lost atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := &dns.Client{Timeout: time.Second}
			m := new(dns.Msg)
			m.SetQuestion("productpage.bookinfo.svc.cluster.local.", dns.TypeA)
			for {
				select {
				case <-stop:
					return
				default:
				}
				asked.Add(1)
				if r, _, err := c.Exchange(m, onAddr); err != nil || len(r.Answer) != 1 {
					lost.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	corefile := filepath.Join(onDir, "Corefile")
	for i := range 5 {
		time.Sleep(300 * time.Millisecond)
		body := batchCorefile(onPort, onMetrics, table, up.addr, "on", fmt.Sprintf("\n    # reload %d", i))
		if err := os.WriteFile(corefile, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		on.reload(t)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if lost.Load() > 0 {
		t.Errorf("%d of %d questions lost across 5 reloads", lost.Load(), asked.Load())
	}
	if n := strings.Count(on.out.String(), "batched UDP path on for"); n < 6 {
		t.Errorf("the batched path started %d times, want once per instance (6)", n)
	}

	// Without bind: a wildcard listener, every reply from the address its query went to.
	wildPort, wildMetrics := freePort(t), freePort(t)
	wildDir := filepath.Join(dir, "wild")
	os.Mkdir(wildDir, 0o755)
	wildCorefile := strings.Replace(batchCorefile(wildPort, wildMetrics, table, up.addr, "on", ""), "    bind 127.0.0.1\n", "", 1)
	wild := startCoreDNS(t, wildDir, wildCorefile, "127.0.0.1:"+wildPort)
	if !strings.Contains(wild.out.String(), "batched UDP path on for dns://:"+wildPort) {
		t.Fatalf("the batched path did not start on the wildcard listener:\n%s", wild.out)
	}
	for _, host := range []string{"127.0.0.1", "127.0.0.2", "::1"} {
		for _, name := range []string{"productpage.bookinfo.svc.cluster.local.", "elsewhere.example.org."} {
			conn, err := net.Dial("udp", net.JoinHostPort(host, wildPort)) // takes replies from there only
			if err != nil {
				t.Fatal(err)
			}
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			c := &dns.Conn{Conn: conn}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			err = c.WriteMsg(m)
			var r *dns.Msg
			if err == nil {
				r, err = c.ReadMsg()
			}
			conn.Close()
			if err != nil || len(r.Answer) != 1 {
				t.Errorf("wildcard listener, %s via %s: %v %v", name, host, r, err)
			}
		}
	}
	if n := batchedCount(t, wildMetrics, "answered"); n < 3 {
		t.Errorf("wildcard listener: %d answered on the batched path, want 3", n)
	}

	// log above meshdns sees every query: the path stays off and says why.
	logPort, logMetrics := freePort(t), freePort(t)
	logDir := filepath.Join(dir, "log")
	os.Mkdir(logDir, 0o755)
	withLog := startCoreDNS(t, logDir, batchCorefile(logPort, logMetrics, table, up.addr, "on", "\n    log"), "127.0.0.1:"+logPort)
	if r := exchange(t, "udp", "127.0.0.1:"+logPort, "reviews.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Fatalf("with log: %v", r)
	}
	if !strings.Contains(withLog.out.String(), "batched UDP path off for dns://127.0.0.1:"+logPort+": log runs before meshdns") {
		t.Errorf("with log above: no reason logged:\n%s", withLog.out)
	}
}

// responsesByRcode reads coredns_dns_responses_total{rcode} for the plugin meshdns from the metrics
// endpoint, summed over the zones.
func responsesByRcode(t *testing.T, metricsPort, rcode string) int {
	t.Helper()
	body := metricsBody(t, "127.0.0.1:"+metricsPort)
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^coredns_dns_responses_total\{([^}]*)\} (\d+)$`).FindAllSubmatch(body, -1) {
		if strings.Contains(string(m[1]), `rcode="`+rcode+`"`) && strings.Contains(string(m[1]), `plugin="meshdns"`) {
			c, _ := strconv.Atoi(string(m[2]))
			n += c
		}
	}
	return n
}

// A block that is the authority for cluster.local answers the zone's negative answers on the batched
// path exactly as CoreDNS's path does (NXDOMAIN and NODATA with the zone's SOA), and the request
// metrics count them by their rcode as the prometheus plugin would.
func TestBatchedUDPZoneAuthority(t *testing.T) {
	up := startUpstream(t)
	dir := t.TempDir()
	table := batchTable(t, dir)
	corefile := func(port, metricsPort, batch string) string {
		return fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    prometheus 127.0.0.1:%s
    meshdns cluster.local {
        file %s 0
        batch_udp %s
    }
    forward . %s
}
`, port, metricsPort, table, batch, up.addr)
	}
	onPort, onMetrics, offPort, offMetrics := freePort(t), freePort(t), freePort(t), freePort(t)
	onAddr, offAddr := "127.0.0.1:"+onPort, "127.0.0.1:"+offPort
	onDir, offDir := filepath.Join(dir, "on"), filepath.Join(dir, "off")
	os.Mkdir(onDir, 0o755)
	os.Mkdir(offDir, 0o755)
	on := startCoreDNS(t, onDir, corefile(onPort, onMetrics, "on"), onAddr)
	startCoreDNS(t, offDir, corefile(offPort, offMetrics, "off"), offAddr)
	if !strings.Contains(on.out.String(), "batched UDP path on for dns://"+onAddr) {
		t.Fatalf("the batched path did not start:\n%s", on.out)
	}
	questions := []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"productpage.bookinfo.svc.cluster.local.", dns.TypeA, false},
		{"productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA, false}, // NODATA
		{"nope.bookinfo.svc.cluster.local.", dns.TypeA, false},           // NXDOMAIN
		{"NoPe.BookInfo.svc.cluster.local.", dns.TypeAAAA, true},
		{"www.example.org.bookinfo.svc.cluster.local.", dns.TypeA, false}, // a search-path miss
		{"elsewhere.example.org.", dns.TypeA, false},                      // outside the zone: forwarded
	}
	before := batchedCount(t, onMetrics, "answered")
	for _, q := range questions {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(1232, false)
		}
		c := &dns.Client{Timeout: 2 * time.Second}
		got, _, err := c.Exchange(m, onAddr)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		want, _, err := c.Exchange(m, offAddr)
		if err != nil {
			t.Fatalf("%s (batch_udp off): %v", q.name, err)
		}
		if comparable(got) != comparable(want) {
			t.Errorf("%s %s:\n batched %s\nCoreDNS's %s", q.name, dns.TypeToString[q.qtype], comparable(got), comparable(want))
		}
	}
	if n := batchedCount(t, onMetrics, "answered") - before; n != 5 {
		t.Errorf("%d questions answered on the batched path, want the 5 in the zone", n)
	}
	for _, rcode := range []string{"NOERROR", "NXDOMAIN"} {
		if got, want := responsesByRcode(t, onMetrics, rcode), responsesByRcode(t, offMetrics, rcode); got != want {
			t.Errorf("responses with rcode %s from meshdns: %d on the batched path, %d on CoreDNS's", rcode, got, want)
		}
	}
}
