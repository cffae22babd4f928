package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
)

// records renders a section of a reply as "name TYPE data" lines, sorted, TTLs left out.
func records(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		out = append(out, strings.ToLower(h.Name)+" "+dns.TypeToString[h.Rrtype]+" "+strings.TrimSpace(strings.TrimPrefix(rr.String(), h.String())))
	}
	slices.Sort(out)
	return out
}

// TestMCSDNSConformance checks the clauses of the Kubernetes Multi-Cluster Services DNS specification
// 1.0.0 (KEP-1645, specification.md) over the wire, against the binary watching a real
// kube-apiserver that holds ServiceImports and MCS EndpointSlices of three clusters, as an MCS
// controller writes them. Each subtest is named after its clause.
func TestMCSDNSConformance(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{WithoutIstiod: true})
	up := startUpstream(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	https := realstack.ImportPort{Name: "https", Protocol: "TCP", Port: 443}
	dnsPort := realstack.ImportPort{Name: "dns", Protocol: "UDP", Port: 53}
	unnamed := realstack.ImportPort{Protocol: "TCP", Port: 8080}
	must(stack.CreateServiceImport("test", "myservice", false, []string{"10.42.42.42", "2001:db8::1"}, https, dnsPort, unnamed))
	must(stack.CreateServiceImport("test", "headless", true, nil, https))
	must(stack.SetImportEndpoints("test", "headless", "clustera",
		realstack.Endpoint{IP: "10.3.0.100", Hostname: "my-pet-1"}, realstack.Endpoint{IP: "10.3.0.101", Hostname: "my-pet-2"},
		realstack.Endpoint{IP: "10.3.0.102", Hostname: "sick", NotReady: true}, realstack.Endpoint{IP: "2001:db8::3:100", Hostname: "my-pet-1"}))
	must(stack.SetImportEndpoints("test", "headless", "clusterb", realstack.Endpoint{IP: "10.4.0.100", Hostname: "my-pet-1"}))
	must(stack.CreateServiceImport("test", "idle", true, nil, https))
	must(stack.SetImportEndpoints("test", "idle", "clustera", realstack.Endpoint{IP: "10.3.0.200", Hostname: "x", NotReady: true}))

	dir := t.TempDir()
	port := freePort(t)
	addr := "127.0.0.1:" + port
	startCoreDNS(t, dir, fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        kubernetes {
            kubeconfig %s
            cluster clustera
            clusterset
        }
        fallthrough
    }
    forward . %s
}
`, port, stack.Kubeconfig, up.addr), addr)

	ask := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		return exchange(t, "udp", addr, name, qtype, 1232)
	}
	expect := func(t *testing.T, name string, qtype uint16, rcode int, answer ...string) *dns.Msg {
		t.Helper()
		r := ask(name, qtype)
		got := records(r.Answer)
		slices.Sort(answer)
		if r.Rcode != rcode || !slices.Equal(got, answer) {
			t.Errorf("%s %s: %s %q, want %s %q", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], got, dns.RcodeToString[rcode], answer)
		}
		if !r.Authoritative {
			t.Errorf("%s %s: not authoritative", name, dns.TypeToString[qtype])
		}
		return r
	}
	const ok, nx = dns.RcodeSuccess, dns.RcodeNameError
	const svc = "myservice.test.svc.clusterset.local."
	const hl = "headless.test.svc.clusterset.local."

	t.Run("2.2 schema version TXT", func(t *testing.T) {
		expect(t, "dns-version.clusterset.local.", dns.TypeTXT, ok, `dns-version.clusterset.local. TXT "1.0.0"`)
		out, err := execCommand("dig", "+short", "-p", port, "@127.0.0.1", "dns-version.clusterset.local", "TXT").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != `"1.0.0"` {
			t.Errorf("dig: %v %q", err, out)
		}
	})
	t.Run("2.3.1 ClusterSetIP A and AAAA, dual stack", func(t *testing.T) {
		expect(t, svc, dns.TypeA, ok, svc+" A 10.42.42.42")
		expect(t, svc, dns.TypeAAAA, ok, svc+" AAAA 2001:db8::1")
		addrs, err := goResolver(addr).LookupHost(t.Context(), strings.TrimSuffix(svc, "."))
		slices.Sort(addrs)
		if err != nil || !slices.Equal(addrs, []string{"10.42.42.42", "2001:db8::1"}) {
			t.Errorf("Go resolver: %v %v", addrs, err)
		}
	})
	t.Run("2.3.2 ClusterSetIP SRV per named port, addresses in Additional", func(t *testing.T) {
		r := expect(t, "_https._tcp."+svc, dns.TypeSRV, ok, "_https._tcp."+svc+" SRV 0 100 443 "+svc)
		if extra := records(r.Extra); !slices.Contains(extra, svc+" A 10.42.42.42") || !slices.Contains(extra, svc+" AAAA 2001:db8::1") {
			t.Errorf("Additional: %q", extra)
		}
		expect(t, "_dns._udp."+svc, dns.TypeSRV, ok, "_dns._udp."+svc+" SRV 0 100 53 "+svc)
		// Unnamed ports have no SRV record: no name under _tcp but _https.
		expect(t, "_tcp."+svc, dns.TypeSRV, ok)
		expect(t, "_http._tcp."+svc, dns.TypeSRV, nx)
	})
	t.Run("2.3.3 ClusterSetIP PTR", func(t *testing.T) {
		expect(t, "42.42.42.10.in-addr.arpa.", dns.TypePTR, ok, "42.42.42.10.in-addr.arpa. PTR "+svc)
		rev, _ := dns.ReverseAddr("2001:db8::1")
		expect(t, rev, dns.TypePTR, ok, rev+" PTR "+svc)
	})
	t.Run("2.3.4 no record for one cluster of a ClusterSetIP service", func(t *testing.T) {
		expect(t, "clustera."+svc, dns.TypeA, nx)
		expect(t, "clusterb."+svc, dns.TypeAAAA, nx)
	})
	t.Run("2.4.1 headless A and AAAA of every ready endpoint across clusters", func(t *testing.T) {
		expect(t, hl, dns.TypeA, ok, hl+" A 10.3.0.100", hl+" A 10.3.0.101", hl+" A 10.4.0.100")
		expect(t, hl, dns.TypeAAAA, ok, hl+" AAAA 2001:db8::3:100")
		expect(t, "my-pet-1.clustera."+hl, dns.TypeA, ok, "my-pet-1.clustera."+hl+" A 10.3.0.100")
		expect(t, "my-pet-1.clustera."+hl, dns.TypeAAAA, ok, "my-pet-1.clustera."+hl+" AAAA 2001:db8::3:100")
		expect(t, "my-pet-1.clusterb."+hl, dns.TypeA, ok, "my-pet-1.clusterb."+hl+" A 10.4.0.100")
		expect(t, "sick.clustera."+hl, dns.TypeA, nx)
		// No ready endpoint: NXDOMAIN, as the specification says.
		expect(t, "idle.test.svc.clusterset.local.", dns.TypeA, nx)
		expect(t, "idle.test.svc.clusterset.local.", dns.TypeAAAA, nx)
	})
	t.Run("2.4.2 headless SRV, endpoints x named ports, addresses in Additional", func(t *testing.T) {
		r := expect(t, "_https._tcp."+hl, dns.TypeSRV, ok,
			"_https._tcp."+hl+" SRV 0 100 443 my-pet-1.clustera."+hl,
			"_https._tcp."+hl+" SRV 0 100 443 my-pet-2.clustera."+hl,
			"_https._tcp."+hl+" SRV 0 100 443 my-pet-1.clusterb."+hl)
		if extra := records(r.Extra); !slices.Contains(extra, "my-pet-2.clustera."+hl+" A 10.3.0.101") || !slices.Contains(extra, "my-pet-1.clustera."+hl+" AAAA 2001:db8::3:100") {
			t.Errorf("Additional: %q", extra)
		}
	})
	t.Run("2.4.3 headless PTR to the endpoint's name", func(t *testing.T) {
		expect(t, "100.0.3.10.in-addr.arpa.", dns.TypePTR, ok, "100.0.3.10.in-addr.arpa. PTR my-pet-1.clustera."+hl)
		expect(t, "100.0.4.10.in-addr.arpa.", dns.TypePTR, ok, "100.0.4.10.in-addr.arpa. PTR my-pet-1.clusterb."+hl)
		rev, _ := dns.ReverseAddr("2001:db8::3:100")
		expect(t, rev, dns.TypePTR, ok, rev+" PTR my-pet-1.clustera."+hl)
	})
	t.Run("2.4.4 no record for one cluster of a headless service", func(t *testing.T) {
		// It has names below it (the endpoints'), so it exists as an empty non-terminal (RFC 8020):
		// NODATA, no record.
		expect(t, "clustera."+hl, dns.TypeA, ok)
		expect(t, "clusterb."+hl, dns.TypeAAAA, ok)
	})
	t.Run("the zone is answered with authority, nothing forwarded", func(t *testing.T) {
		r := expect(t, "nothing.test.svc.clusterset.local.", dns.TypeA, nx)
		if len(r.Ns) != 1 || r.Ns[0].Header().Name != "clusterset.local." {
			t.Errorf("authority: %v", r.Ns)
		}
		expect(t, "clusterset.local.", dns.TypeA, ok)
		expect(t, "test.svc.clusterset.local.", dns.TypeA, ok)
		up.mu.Lock()
		defer up.mu.Unlock()
		for q := range up.seen {
			if strings.Contains(q, "clusterset.local.") || strings.Contains(q, ".arpa.") {
				t.Errorf("%s reached the upstream", q)
			}
		}
	})

	// Changes follow: an endpoint becomes ready, a cluster leaves, an import goes away.
	must(stack.SetImportEndpoints("test", "idle", "clusterb", realstack.Endpoint{IP: "10.4.0.200", Hostname: "y"}))
	must(stack.SetImportEndpoints("test", "headless", "clusterb"))
	must(stack.DeleteServiceImport("test", "myservice"))
	eventually(t, 10*time.Second, "changes answered", func() error {
		var errs []string
		if got := records(ask("idle.test.svc.clusterset.local.", dns.TypeA).Answer); len(got) != 1 || !strings.HasSuffix(got[0], "A 10.4.0.200") {
			errs = append(errs, fmt.Sprintf("idle: %q", got))
		}
		if r := ask("my-pet-1.clusterb."+hl, dns.TypeA); r.Rcode != nx {
			errs = append(errs, "my-pet-1.clusterb still there")
		}
		if r := ask(svc, dns.TypeA); r.Rcode != nx {
			errs = append(errs, "myservice still there")
		}
		if r := ask("_https._tcp."+svc, dns.TypeSRV); r.Rcode != nx {
			errs = append(errs, "myservice's SRV still there")
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	})
	expect(t, "_https._tcp."+hl, dns.TypeSRV, ok,
		"_https._tcp."+hl+" SRV 0 100 443 my-pet-1.clustera."+hl,
		"_https._tcp."+hl+" SRV 0 100 443 my-pet-2.clustera."+hl)
	expect(t, "clusterb."+hl, dns.TypeA, nx)
}
