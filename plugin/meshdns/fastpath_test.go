package meshdns

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"testing"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/test"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

// slowOnly is a terminal writer the fast path does not know, so replies take the dns.Msg path.
type slowOnly struct{ test.ResponseWriter }

// TestFastPathMatchesSlowPath: for every question, the reply written as bytes says the same as the
// reply built as a dns.Msg, and the fast path is taken exactly for direct A/AAAA hits without EDNS
// options.
func TestFastPathMatchesSlowPath(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough")
	tests := []struct {
		name  string
		qtype uint16
		edns  int // 0: none, 1: plain EDNS0, 2: with a cookie option
		fast  bool
	}{
		{"productpage.bookinfo.svc.cluster.local.", dns.TypeA, 0, true},
		{"ProductPage.BookInfo.svc.cluster.local.", dns.TypeA, 1, true},
		{"reviews.", dns.TypeA, 0, true},
		{"frontend.web.svc.cluster.local.", dns.TypeAAAA, 1, true},
		{"x.y.googleapis.example.", dns.TypeA, 0, true},
		{"mysql.db.svc.cluster.local.", dns.TypeA, 1, true},
		{"reviews.", dns.TypeA, 2, false},                                                     // options are echoed by the slow path
		{"reviews.", dns.TypeAAAA, 0, true},                                                   // NODATA, with the SOA
		{"api.payments.example.com.", dns.TypeMX, 1, true},                                    // NODATA, the host's own SOA
		{"reviews.canary.svc.cluster.local.bookinfo.svc.cluster.local.", dns.TypeA, 0, false}, // CNAME
		{"10.10.96.10.in-addr.arpa.", dns.TypePTR, 0, false},
		{"example.org.", dns.TypeA, 0, false},
	}
	for _, tc := range tests {
		req := new(dns.Msg)
		req.SetQuestion(tc.name, tc.qtype)
		req.Id = 777
		req.CheckingDisabled = true
		switch tc.edns {
		case 1:
			req.SetEdns0(1232, true)
		case 2:
			req.SetEdns0(1232, false)
			opt := req.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
		}
		fastResp, fast := serveVia(t, m, req.Copy(), &wireCapture{})
		if fast != tc.fast {
			t.Errorf("%s %s: fast path %v, want %v", tc.name, dns.TypeToString[tc.qtype], fast, tc.fast)
		}
		slowResp, _ := serveVia(t, m, req.Copy(), &slowOnly{})
		// The slow path leaves EDNS to the server's scrubber; add what it would.
		if opt := req.IsEdns0(); opt != nil && fast {
			o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
			o.SetUDPSize(opt.UDPSize())
			if opt.Do() {
				o.SetDo()
			}
			slowResp.Extra = append(slowResp.Extra, o)
		}
		// Rotation moves on with every answer: compare multi-address answers as sets.
		sort.Sort(test.RRSet(fastResp.Answer))
		sort.Sort(test.RRSet(slowResp.Answer))
		if fastResp.String() != slowResp.String() {
			t.Errorf("%s %s: the replies differ\nfast:\n%v\nslow:\n%v", tc.name, dns.TypeToString[tc.qtype], fastResp, slowResp)
		}
	}
}

func TestFastPathTooBigForUDPFallsBack(t *testing.T) {
	ips := "["
	for i := range 60 {
		if i > 0 {
			ips += ", "
		}
		ips += fmt.Sprintf("10.1.0.%d", i+1)
	}
	m := newTestMeshDNS(t, "table:\n  big.example: {ips: "+ips+"]}\n", "", "")
	req := new(dns.Msg)
	req.SetQuestion("big.example.", dns.TypeA)
	if _, fast := serveVia(t, m, req, &wireCapture{}); fast {
		t.Error("60 addresses (over 512 bytes) went out on the fast path over UDP")
	}
	req.SetEdns0(4096, false)
	if resp, fast := serveVia(t, m, req, &wireCapture{}); !fast || len(resp.Answer) != 60 {
		t.Errorf("with EDNS0 4096: fast %v, %d answers", fast, len(resp.Answer))
	}
}

// TestFastPathVariants: a host with a variant for one namespace and another for the rest answers each
// client its own, the same on the fast path and the dns.Msg path, and not at all where it is hidden.
func TestFastPathVariants(t *testing.T) {
	api := func(addr string, to, hidden []string) table.Entry {
		return table.Entry{Host: "api.example.com", Registry: table.RegistryExternal, Addrs: []netip.Addr{netip.MustParseAddr(addr)},
			VisibleTo: to, HiddenFrom: hidden}
	}
	entries := []table.Entry{api("240.0.0.1", []string{"a"}, nil), api("240.0.0.2", nil, []string{"c"})}
	for ns, want := range map[string]string{"a": "240.0.0.1", "b": "240.0.0.2", "c": ""} {
		m := newTestMeshDNS(t, exampleTable, "", "namespace "+ns+"\nfallthrough")
		(&sink{store: m.store, index: 0}).Publish(entries)
		req := new(dns.Msg)
		req.SetQuestion("api.example.com.", dns.TypeA)
		for _, terminal := range []dns.ResponseWriter{&wireCapture{}, &slowOnly{}} {
			resp, fast := serveVia(t, m, req.Copy(), terminal)
			got := ""
			if len(resp.Answer) == 1 {
				got = resp.Answer[0].(*dns.A).A.String()
			}
			_, wire := terminal.(*wireCapture)
			if got != want || want == "" && resp.Rcode != dns.RcodeRefused || fast != (wire && want != "") {
				t.Errorf("from %s (fast %v): %v, want %q", ns, fast, resp, want)
			}
		}
	}
}

// Negative answers written as bytes say what the dns.Msg path says, and tell the metrics recorder
// their rcode, as a dns.Msg written through it does.
func TestFastPathNegativeAnswers(t *testing.T) {
	for _, tc := range []struct {
		args, body, name string
		qtype            uint16
		rcode            int
	}{
		{"cluster.local", "", "nope.bookinfo.svc.cluster.local.", dns.TypeA, dns.RcodeNameError},
		{"cluster.local", "ttl 5", "NoPe.svc.cluster.local.", dns.TypeAAAA, dns.RcodeNameError},
		{"cluster.local", "", "nope.svc.Cluster.LOCAL.", dns.TypeA, dns.RcodeNameError}, // the SOA's owner as the zone's, not the question's
		{"cluster.local", "", "productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess},
		{"svc.cluster.local", "", "productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess}, // the plugin's zone's SOA
		{"example.com", "", "nope.example.com.", dns.TypeA, dns.RcodeNameError},
		{"", "", "not.in.the.table.", dns.TypeA, dns.RcodeNameError},
	} {
		m := newTestMeshDNS(t, exampleTable, tc.args, tc.body)
		req := new(dns.Msg)
		req.SetQuestion(tc.name, tc.qtype)
		terminal := &wireCapture{}
		rec := metrics.NewRecorder(terminal)
		m.ServeDNS(context.Background(), rec, req.Copy())
		if terminal.wire == nil {
			t.Errorf("%s %s (zone %q): not written as bytes", tc.name, dns.TypeToString[tc.qtype], tc.args)
			continue
		}
		fast := new(dns.Msg)
		if err := fast.Unpack(terminal.wire); err != nil {
			t.Fatal(err)
		}
		slow, _ := serveVia(t, m, req.Copy(), &slowOnly{})
		if fast.String() != slow.String() || fast.Rcode != tc.rcode || len(fast.Ns) != 1 {
			t.Errorf("%s %s (zone %q): the replies differ\nfast:\n%v\nslow:\n%v", tc.name, dns.TypeToString[tc.qtype], tc.args, fast, slow)
		}
		if rec.Rcode != tc.rcode {
			t.Errorf("%s %s (zone %q): rcode %d recorded, want %d", tc.name, dns.TypeToString[tc.qtype], tc.args, rec.Rcode, tc.rcode)
		}
	}
}
