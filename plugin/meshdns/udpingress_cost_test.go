package meshdns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// costQuery is a query whose batched answer must allocate nothing.
type costQuery struct {
	name  string
	qtype uint16
	edit  func(*dns.Msg)
}

// assertAnsweredWithoutAllocating checks that l answers each query on the batched path, with no
// allocation per answer.
func assertAnsweredWithoutAllocating(t *testing.T, l *udpListener, queries []costQuery) {
	t.Helper()
	client := netip.MustParseAddrPort("127.0.0.1:5353")
	out := make([]byte, 0, 512)
	for _, tc := range queries {
		query := packQuery(t, tc.name, tc.qtype, tc.edit)
		if _, ok := l.respond(out, query, client); !ok {
			t.Fatalf("%s %s: not answered on the batched path", tc.name, dns.TypeToString[tc.qtype])
		}
		if allocs := testing.AllocsPerRun(1000, func() { l.respond(out, query, client) }); allocs != 0 {
			t.Errorf("%s %s: %.2f allocations per answer, want 0", tc.name, dns.TypeToString[tc.qtype], allocs)
		}
	}
}

// A table hit on the batched path allocates nothing: with the ingress's own zero (its test), a
// datagram answered from the table costs no garbage at all.
func TestBatchedHitAllocatesNothing(t *testing.T) {
	l := batchedListener(newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough"))
	assertAnsweredWithoutAllocating(t, l, []costQuery{
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, nil},
		{"ReViEwS.BookInfo.svc.cluster.local.", dns.TypeA, nil},
		{"reviews.", dns.TypeA, nil},
		{"reviews.bookinfo.", dns.TypeAAAA, func(m *dns.Msg) { m.SetEdns0(1232, true) }},
	})
}

// Negative answers on the batched path allocate nothing either: NXDOMAIN with the zone's SOA packed
// in place, NODATA with the host's prepacked one.
func TestBatchedNegativeAllocatesNothing(t *testing.T) {
	l := batchedListener(newTestMeshDNS(t, exampleTable, "cluster.local", "namespace bookinfo"))
	assertAnsweredWithoutAllocating(t, l, []costQuery{
		{"nope.bookinfo.svc.cluster.local.", dns.TypeA, nil},
		{"NoPe.BookInfo.svc.cluster.local.", dns.TypeAAAA, func(m *dns.Msg) { m.SetEdns0(1232, true) }},
		{"productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA, nil},
	})
}

// benchRespond times l's batched answer to one query.
func benchRespond(b *testing.B, l *udpListener, name string) {
	client := netip.MustParseAddrPort("127.0.0.1:5353")
	query := packQuery(b, name, dns.TypeA, nil)
	out := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := l.respond(out, query, client); !ok {
			b.Fatal("not answered")
		}
	}
}

// BenchmarkBatchedHit is the batched path's work for one datagram past the socket: parsing, routing,
// the table lookup and the reply's bytes.
func BenchmarkBatchedHit(b *testing.B) {
	l := batchedListener(newTestMeshDNS(b, exampleTable, "", "namespace bookinfo\nfallthrough"))
	benchRespond(b, l, "productpage.bookinfo.svc.cluster.local.")
}

// BenchmarkBatchedNXDomain is BenchmarkBatchedHit for a name absent from the plugin's zone.
func BenchmarkBatchedNXDomain(b *testing.B) {
	l := batchedListener(newTestMeshDNS(b, exampleTable, "cluster.local", "namespace bookinfo"))
	benchRespond(b, l, "svc10000.ns1.svc.cluster.local.")
}
