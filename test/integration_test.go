package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// meshEnv is the binary serving a name table with a real upstream behind forward.
type meshEnv struct {
	dir, table         string
	addr, metrics, rdy string
	up                 *upstream
	srv                *server
}

// bigHeadless lists n pod addresses, for a headless service too large for one UDP packet.
func bigHeadless(n int) string {
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("%q", fmt.Sprintf("10.250.%d.%d", i/250, i%250+1))
	}
	return "[" + strings.Join(ips, ", ") + "]"
}

func startMesh(t *testing.T) *meshEnv {
	t.Helper()
	e := &meshEnv{dir: t.TempDir(), up: startUpstream(t)}
	data, err := os.ReadFile("../example/nametable.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e.table = filepath.Join(e.dir, "nametable.yaml")
	extra := "  big.db.svc.cluster.local:\n    ips: " + bigHeadless(100) + "\n    registry: Kubernetes\n"
	if err := os.WriteFile(e.table, append(data, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	port, mport, rport := freePort(t), freePort(t), freePort(t)
	e.addr, e.metrics, e.rdy = "127.0.0.1:"+port, "127.0.0.1:"+mport, "127.0.0.1:"+rport
	// cache as a user's Corefile has it: meshdns answers above it, so changes show at once.
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    cache 30
    meshdns {
        file nametable.yaml 200ms
        namespace bookinfo
        fallthrough
    }
    forward . %s
    prometheus %s
    ready %s
    errors
}
`, port, e.up.addr, e.metrics, e.rdy)
	e.srv = startCoreDNS(t, e.dir, corefile, e.addr)
	return e
}

// metricsBody is what a Prometheus endpoint at addr serves.
func metricsBody(t *testing.T, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}

func (e *meshEnv) metric(t *testing.T, name string) float64 {
	t.Helper()
	body := metricsBody(t, e.metrics)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func TestServesOverUDPAndTCP(t *testing.T) {
	e := startMesh(t)
	for _, netw := range []string{"udp", "tcp"} {
		r := exchange(t, netw, e.addr, "productpage.bookinfo.svc.cluster.local.", dns.TypeA, 0)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.10.10" || !r.Authoritative {
			t.Errorf("%s hit: %v", netw, r)
		}
		r = exchange(t, netw, e.addr, "reviews.", dns.TypeA, 1232)
		if len(r.Answer) != 1 || r.Answer[0].Header().Name != "reviews." {
			t.Errorf("%s short name: %v", netw, r)
		}
		if opt := r.IsEdns0(); opt == nil {
			t.Errorf("%s: EDNS0 query answered without OPT", netw)
		}
		r = exchange(t, netw, e.addr, "www.example.org.", dns.TypeA, 0)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.53" {
			t.Errorf("%s forwarded name: %v", netw, r)
		}
	}
	if e.up.count("www.example.org. A") == 0 {
		t.Error("the upstream never saw the forwarded name")
	}
}

func TestMeshNamesAreNeverForwarded(t *testing.T) {
	e := startMesh(t)
	questions := []struct {
		name  string
		qtype uint16
	}{
		{"productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA}, // A-only: NODATA
		{"api.payments.example.com.", dns.TypeAAAA},
		{"api.payments.example.com.", dns.TypeMX},
		{"reviews.", dns.TypeTXT},
		{"deep.name.googleapis.internal.example.", dns.TypeAAAA},
		{"productpage.bookinfo.svc.cluster.local.bookinfo.svc.cluster.local.", dns.TypeAAAA},
		{"10.10.96.10.in-addr.arpa.", dns.TypeA},
	}
	for _, q := range questions {
		r := exchange(t, "udp", e.addr, q.name, q.qtype, 0)
		if r.Rcode != dns.RcodeSuccess || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
			t.Errorf("%s %s: want NOERROR/NODATA with SOA, got %v", q.name, dns.TypeToString[q.qtype], r)
		}
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == q.qtype {
				t.Errorf("%s %s: NODATA answer holds %v", q.name, dns.TypeToString[q.qtype], rr)
			}
		}
	}
	if n := e.up.total() - e.up.count("startup.probe.invalid. A"); n != 0 {
		t.Errorf("the upstream saw %d questions about mesh names: %v", n, e.up.seen)
	}
}

func TestLargeAnswersTruncateOverUDP(t *testing.T) {
	e := startMesh(t)
	const name = "big.db.svc.cluster.local."
	for _, bufsize := range []uint16{0, 1232} {
		r := exchange(t, "udp", e.addr, name, dns.TypeA, bufsize)
		limit := max(int(bufsize), 512)
		r.Compress = true // as it travelled
		buf, _ := r.Pack()
		if !r.Truncated || len(buf) > limit || len(r.Answer) >= 100 {
			t.Errorf("UDP bufsize %d: TC=%v, %d answers, %d bytes (limit %d)", bufsize, r.Truncated, len(r.Answer), len(buf), limit)
		}
	}
	r := exchange(t, "udp", e.addr, name, dns.TypeA, 4096)
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("UDP bufsize 4096: TC=%v, %d answers, want all 100", r.Truncated, len(r.Answer))
	}
	r = exchange(t, "tcp", e.addr, name, dns.TypeA, 0)
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("TCP: TC=%v, %d answers, want all 100", r.Truncated, len(r.Answer))
	}
}

func TestGoResolver(t *testing.T) {
	e := startMesh(t)
	res := goResolver(e.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, want := range map[string][]string{
		"productpage.bookinfo.svc.cluster.local": {"10.96.10.10"},
		"frontend.web.svc.cluster.local":         {"10.96.30.1", "fd00:10:96::30:1"},
		"mysql.db.svc.cluster.local":             {"10.244.1.5", "10.244.2.7", "10.244.3.9"},
		"Ratings.BookInfo-Canary.svc":            {"10.96.20.13"},
		"anything.googleapis.internal.example":   {"240.240.0.2", "240.240.0.3"},
		"www.example.org":                        {"192.0.2.53"},
	} {
		got, err := res.LookupHost(ctx, name)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("LookupHost(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	names, err := res.LookupAddr(ctx, "10.96.10.12")
	if err != nil || !slices.Equal(names, []string{"reviews.bookinfo.svc.cluster.local."}) {
		t.Errorf("LookupAddr = %v, %v", names, err)
	}
	cname, err := res.LookupCNAME(ctx, "details.bookinfo.svc.cluster.local.bookinfo.svc.cluster.local.")
	if err != nil || cname != "details.bookinfo.svc.cluster.local." {
		t.Errorf("LookupCNAME of a search-suffixed name = %q, %v", cname, err)
	}
}

func TestFileChangesAreServedAndBadFilesKeepTheLastTable(t *testing.T) {
	e := startMesh(t)
	const added = "added.bookinfo.svc.cluster.local."
	if r := exchange(t, "udp", e.addr, added, dns.TypeA, 0); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.53" {
		t.Fatalf("before the change the name should be forwarded: %v", r)
	}
	// Asked once before the change: a cache between the client and meshdns would keep this answer.
	if r := exchange(t, "udp", e.addr, "productpage.bookinfo.svc.cluster.local.", dns.TypeA, 0); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.10.10" {
		t.Fatalf("productpage before the change: %v", r)
	}
	write := func(data string) {
		tmp := e.table + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, e.table); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"table": {"added.bookinfo.svc.cluster.local": {"ips": ["10.96.99.1"], "registry": "Kubernetes", "shortname": "added", "namespace": "bookinfo"}}}`)
	start := time.Now()
	eventually(t, 5*time.Second, "the new name served", func() error {
		// Forwarded and cached before the change: meshdns, above cache, answers it now.
		r := exchange(t, "udp", e.addr, added, dns.TypeA, 0)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.99.1" {
			return fmt.Errorf("%v", r.Answer)
		}
		r = exchange(t, "udp", e.addr, "added.", dns.TypeA, 0)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.99.1" {
			return fmt.Errorf("%v", r.Answer)
		}
		return nil
	})
	t.Logf("change served after %s", time.Since(start).Round(time.Millisecond))
	if r := exchange(t, "udp", e.addr, "productpage.bookinfo.svc.cluster.local.", dns.TypeA, 0); r.Answer[0].(*dns.A).A.String() != "192.0.2.53" {
		t.Errorf("a name removed from the file should no longer be answered by meshdns (nor by a cache): %v", r)
	}

	before := e.metric(t, `coredns_meshdns_table_updates_total{result="rejected",server="dns://`+e.addr+`",source="file"}`)
	write("{\"table\": {\n  \"added.bookinfo.svc.cluster.local\": {\"ips\": [\"10.96.99.300\"]}}}")
	eventually(t, 5*time.Second, "the bad file counted", func() error {
		if got := e.metric(t, `coredns_meshdns_table_updates_total{result="rejected",server="dns://`+e.addr+`",source="file"}`); got != before+1 {
			return fmt.Errorf("rejected updates %v, want %v", got, before+1)
		}
		return nil
	})
	if !strings.Contains(e.srv.out.String(), `line 2, column 37: host "added.bookinfo.svc.cluster.local": ips[0]: "10.96.99.300" is not an IP address`) {
		t.Errorf("the log does not say what is wrong and where:\n%s", e.srv.out)
	}
	if r := exchange(t, "tcp", e.addr, "added.bookinfo.svc.cluster.local.", dns.TypeA, 0); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.99.1" {
		t.Errorf("after a bad file the last good table should serve: %v", r)
	}
	if got := e.metric(t, `coredns_meshdns_entries{server="dns://`+e.addr+`"}`); got != 1 {
		t.Errorf("entries gauge %v, want 1", got)
	}
}

func TestReadyAndMetrics(t *testing.T) {
	e := startMesh(t)
	resp, err := http.Get("http://" + e.rdy + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/ready: %s", resp.Status)
	}
	exchange(t, "udp", e.addr, "reviews.", dns.TypeA, 0)
	exchange(t, "udp", e.addr, "reviews.", dns.TypeAAAA, 0)
	exchange(t, "udp", e.addr, "www.example.org.", dns.TypeA, 0)
	server := `server="dns://` + e.addr + `"`
	for name, want := range map[string]float64{
		`coredns_meshdns_answers_total{outcome="hit",` + server + `}`:         1,
		`coredns_meshdns_answers_total{outcome="nodata",` + server + `}`:      1,
		`coredns_meshdns_answers_total{outcome="fallthrough",` + server + `}`: 2, // and the startup probe
		`coredns_meshdns_entries{` + server + `}`:                             14,
	} {
		if got := e.metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestBadCorefileStopsStartup(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ corefile, want string }{
		{".:0 {\n  meshdns {\n    file nametable.yaml\n    colour blue\n  }\n}\n", "Corefile:4 - Error during parsing: unknown property 'colour'"},
		{".:0 {\n  meshdns {\n    file missing.yaml\n  }\n}\n", "Corefile:3 - Error during parsing: file missing.yaml: stat missing.yaml: no such file or directory"},
		{".:0 {\n  meshdns {\n    file nametable.yaml\n    ttl -3\n  }\n}\n", `Corefile:4 - Error during parsing: ttl: "-3" is not a number of seconds`},
	}
	if err := os.WriteFile(filepath.Join(dir, "nametable.yaml"), []byte("table: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(tc.corefile), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := execCommand(binary, "-conf", "Corefile")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("started on a bad Corefile:\n%s", tc.corefile)
			continue
		}
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "plugin/meshdns") {
			t.Errorf("output %q\nwant it to name %q", out, tc.want)
		}
	}
}

func TestVersionAndPlugins(t *testing.T) {
	out, err := execCommand(binary, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "meshdns-") || !strings.Contains(string(out), "+coredns-1.15.") {
		t.Errorf("-version: %s %v", out, err)
	}
	out, err = execCommand(binary, "-plugins").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dns.meshdns") || !strings.Contains(string(out), "dns.hosts") || !strings.Contains(string(out), "dns.forward") {
		t.Errorf("-plugins: %s %v", out, err)
	}
}

var _ = net.IPv4
