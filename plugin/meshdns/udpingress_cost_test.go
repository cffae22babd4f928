package meshdns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// A table hit on the batched path allocates nothing: with the ingress's own zero (its test), a
// datagram answered from the table costs no garbage at all.
func TestBatchedHitAllocatesNothing(t *testing.T) {
	l := batchedListener(newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough"))
	client := netip.MustParseAddrPort("127.0.0.1:5353")
	out := make([]byte, 0, 512)
	for _, tc := range []struct {
		name  string
		qtype uint16
		edit  func(*dns.Msg)
	}{
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, nil},
		{"ReViEwS.BookInfo.svc.cluster.local.", dns.TypeA, nil},
		{"reviews.", dns.TypeA, nil},
		{"reviews.bookinfo.", dns.TypeAAAA, func(m *dns.Msg) { m.SetEdns0(1232, true) }},
	} {
		query := packQuery(t, tc.name, tc.qtype, tc.edit)
		if _, ok := l.respond(out, query, client); !ok {
			t.Fatalf("%s %s: not answered on the batched path", tc.name, dns.TypeToString[tc.qtype])
		}
		if allocs := testing.AllocsPerRun(1000, func() { l.respond(out, query, client) }); allocs != 0 {
			t.Errorf("%s %s: %.2f allocations per answer, want 0", tc.name, dns.TypeToString[tc.qtype], allocs)
		}
	}
}

// BenchmarkBatchedHit is the batched path's work for one datagram past the socket: parsing, routing,
// the table lookup and the reply's bytes.
func BenchmarkBatchedHit(b *testing.B) {
	l := batchedListener(newTestMeshDNS(b, exampleTable, "", "namespace bookinfo\nfallthrough"))
	client := netip.MustParseAddrPort("127.0.0.1:5353")
	query := packQuery(b, "productpage.bookinfo.svc.cluster.local.", dns.TypeA, nil)
	out := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := l.respond(out, query, client); !ok {
			b.Fatal("not answered")
		}
	}
}

// Negative answers on the batched path allocate nothing either: NXDOMAIN with the zone's SOA packed
// in place, NODATA with the host's prepacked one.
func TestBatchedNegativeAllocatesNothing(t *testing.T) {
	l := batchedListener(newTestMeshDNS(t, exampleTable, "cluster.local", "namespace bookinfo"))
	client := netip.MustParseAddrPort("127.0.0.1:5353")
	out := make([]byte, 0, 512)
	for _, tc := range []struct {
		name  string
		qtype uint16
		edit  func(*dns.Msg)
	}{
		{"nope.bookinfo.svc.cluster.local.", dns.TypeA, nil},
		{"NoPe.BookInfo.svc.cluster.local.", dns.TypeAAAA, func(m *dns.Msg) { m.SetEdns0(1232, true) }},
		{"productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA, nil},
	} {
		query := packQuery(t, tc.name, tc.qtype, tc.edit)
		if _, ok := l.respond(out, query, client); !ok {
			t.Fatalf("%s %s: not answered on the batched path", tc.name, dns.TypeToString[tc.qtype])
		}
		if allocs := testing.AllocsPerRun(1000, func() { l.respond(out, query, client) }); allocs != 0 {
			t.Errorf("%s %s: %.2f allocations per answer, want 0", tc.name, dns.TypeToString[tc.qtype], allocs)
		}
	}
}

// BenchmarkBatchedNXDomain is BenchmarkBatchedHit for a name absent from the plugin's zone.
func BenchmarkBatchedNXDomain(b *testing.B) {
	l := batchedListener(newTestMeshDNS(b, exampleTable, "cluster.local", "namespace bookinfo"))
	client := netip.MustParseAddrPort("127.0.0.1:5353")
	query := packQuery(b, "svc10000.ns1.svc.cluster.local.", dns.TypeA, nil)
	out := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := l.respond(out, query, client); !ok {
			b.Fatal("not answered")
		}
	}
}
