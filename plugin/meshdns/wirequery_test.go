package meshdns

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/coredns/coredns/plugin/metrics"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

// batchedListener is the batched UDP path of m as a listener whose every zone is m's.
func batchedListener(m *MeshDNS) *udpListener {
	route := &zoneRoute{}
	route.set(".", true)
	return newUDPListener(m, "dns://127.0.0.1:53", route)
}

// sameAsServeDNS checks the batched path against ServeDNS for one datagram: what the batched path
// answers, ServeDNS answers with the very same bytes; what it declines goes to the chain, where
// ServeDNS serves it as before.
func sameAsServeDNS(t *testing.T, l *udpListener, packet []byte) (answered bool) {
	t.Helper()
	reply, ok := l.respond(make([]byte, 0, 4096), packet, netip.MustParseAddrPort("127.0.0.1:5353"))
	if !ok {
		return false
	}
	req := new(dns.Msg)
	if err := req.Unpack(packet); err != nil {
		t.Fatalf("the batched path answered a datagram that does not unpack (%v): %x", err, packet)
	}
	terminal := &wireCapture{}
	l.m.ServeDNS(context.Background(), metrics.NewRecorder(terminal), req)
	want := terminal.wire
	if want == nil {
		t.Fatalf("the batched path answered %v, which ServeDNS does not answer from bytes", req.Question)
	}
	if !bytes.Equal(reply, want) {
		t.Fatalf("the batched path's reply to %v differs from ServeDNS's:\n got %x\nwant %x", req.Question, reply, want)
	}
	return true
}

func packQuery(t testing.TB, name string, qtype uint16, edit func(*dns.Msg)) []byte {
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	if edit != nil {
		edit(req)
	}
	b, err := req.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBatchedPathAnswersAsServeDNS(t *testing.T) {
	l := batchedListener(newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough"))
	edns := func(size uint16, do bool) func(*dns.Msg) { return func(m *dns.Msg) { m.SetEdns0(size, do) } }
	for _, tc := range []struct {
		name   string
		qtype  uint16
		edit   func(*dns.Msg)
		answer bool
	}{
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, nil, true},
		{"ReViEwS.BookInfo.svc.cluster.local.", dns.TypeA, nil, true}, // 0x20: echoed as asked
		{"reviews.", dns.TypeA, nil, true},                            // the namespace's short name
		{"reviews.bookinfo.", dns.TypeAAAA, edns(1232, true), true},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, edns(4096, false), true},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.RecursionDesired = false; m.CheckingDisabled = true }, true},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeMX, nil, false}, // not A or AAAA
		{"nothere.example.org.", dns.TypeA, nil, false},                 // not in the table
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }, false},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Response = true }, false},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Truncated = true }, false},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }, false},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }, false},
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		}, false}, // options are the chain's to echo
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }, false}, // BADVERS is CoreDNS's
		{"a\\.b.cluster.local.", dns.TypeA, nil, false}, // a name that needs escapes
	} {
		packet := packQuery(t, tc.name, tc.qtype, tc.edit)
		if got := sameAsServeDNS(t, l, packet); got != tc.answer {
			t.Errorf("%s %s: answered %v, want %v", tc.name, dns.TypeToString[tc.qtype], got, tc.answer)
		}
	}
}

// A datagram with bytes after the message, or cut short, is the chain's.
func TestParseQueryRefusesTrailingAndShortData(t *testing.T) {
	packet := packQuery(t, "reviews.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if _, ok := parseQuery(packet, new([maxNameWire]byte)); !ok {
		t.Fatal("the whole query does not parse")
	}
	if _, ok := parseQuery(append(packet, 0), new([maxNameWire]byte)); ok {
		t.Error("a trailing byte parsed")
	}
	for n := range len(packet) {
		if _, ok := parseQuery(packet[:n], new([maxNameWire]byte)); ok {
			t.Errorf("%d of %d bytes parsed", n, len(packet))
		}
	}
}

// A zone another block (or a view) shares routes its names away from the batched path.
func TestBatchedPathKeepsToItsZones(t *testing.T) {
	l := batchedListener(newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough"))
	l.route.set("cluster.local.", false) // another block's, more specific
	if sameAsServeDNS(t, l, packQuery(t, "reviews.bookinfo.svc.cluster.local.", dns.TypeA, nil)) {
		t.Error("answered a name of another block's zone")
	}
	if !sameAsServeDNS(t, l, packQuery(t, "reviews.", dns.TypeA, nil)) {
		t.Error("did not answer a name of its own zone")
	}
}

// FuzzBatchedPath feeds arbitrary datagrams to the batched path: it must never panic, and what it
// answers must be exactly what ServeDNS answers.
func FuzzBatchedPath(f *testing.F) {
	// One passes absent names on, one answers NXDOMAIN for its zone.
	listeners := []*udpListener{
		batchedListener(newTestMeshDNS(f, exampleTable, "", "namespace bookinfo\nfallthrough")),
		batchedListener(newTestMeshDNS(f, exampleTable, "cluster.local", "namespace bookinfo")),
	}
	for _, name := range []string{"reviews.", "ReViEwS.BookInfo.svc.cluster.local.", "x.googleapis.example.svc.cluster.local.", "example.org.", "nope.svc.cluster.local."} {
		f.Add(packQuery(f, name, dns.TypeA, nil))
		f.Add(packQuery(f, name, dns.TypeAAAA, func(m *dns.Msg) { m.SetEdns0(1232, true) }))
	}
	f.Fuzz(func(t *testing.T, packet []byte) {
		for _, l := range listeners {
			sameAsServeDNS(t, l, packet)
		}
	})
}

// Negative answers are the batched path's too, where the plugin answers them rather than passing
// the name on: NXDOMAIN in its zones without fallthrough or in a zone the table is the authority
// for, and NODATA in any zone, each with the same bytes as ServeDNS.
func TestBatchedPathAnswersNegatives(t *testing.T) {
	edns := func(m *dns.Msg) { m.SetEdns0(1232, true) }
	type question struct {
		name   string
		qtype  uint16
		edit   func(*dns.Msg)
		answer bool
	}
	for _, tc := range []struct {
		what      string
		m         *MeshDNS
		questions []question
	}{
		{"authority for cluster.local", newTestMeshDNS(t, exampleTable, "cluster.local", "namespace bookinfo"), []question{
			{"nope.bookinfo.svc.cluster.local.", dns.TypeA, nil, true},
			{"Nope.BookInfo.svc.cluster.local.", dns.TypeAAAA, edns, true},
			{"cluster.local.", dns.TypeA, nil, true},                             // the apex holds no host: NXDOMAIN
			{"productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA, nil, true}, // NODATA, the zone's SOA
			{"v6only.web.svc.cluster.local.", dns.TypeA, edns, true},
			{"reviews.canary.svc.cluster.local.bookinfo.svc.cluster.local.", dns.TypeA, nil, false}, // CNAME
			{"api.payments.example.com.", dns.TypeA, nil, false},                                    // outside the zone
			{"reviews.", dns.TypeA, nil, false},
		}},
		{"the root zone without fallthrough", newTestMeshDNS(t, exampleTable, "", "namespace bookinfo"), []question{
			{"not.in.the.table.", dns.TypeA, nil, true},
			{"api.payments.example.com.", dns.TypeAAAA, nil, true}, // the host's own SOA
			{"reviews.", dns.TypeAAAA, edns, true},                 // the cluster domain's
		}},
		{"fallthrough", newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough"), []question{
			{"nope.bookinfo.svc.cluster.local.", dns.TypeA, nil, false}, // the next plugin's
			{"productpage.bookinfo.svc.cluster.local.", dns.TypeAAAA, nil, true},
		}},
		{"authority for a zone of the table, with fallthrough", newEntriesMeshDNS(t, []table.Entry{
			{Host: "clusterset.local", Authoritative: true},
			{Host: "web.shop.svc.clusterset.local", Addrs: addrs("10.42.0.1")},
		}), []question{
			{"nothing.shop.svc.clusterset.local.", dns.TypeA, nil, true},
			{"shop.svc.clusterset.local.", dns.TypeA, nil, true}, // an empty non-terminal: NODATA
			{"web.shop.svc.clusterset.local.", dns.TypeAAAA, edns, true},
			{"nothing.example.org.", dns.TypeA, nil, false},
		}},
	} {
		l := batchedListener(tc.m)
		for _, q := range tc.questions {
			if got := sameAsServeDNS(t, l, packQuery(t, q.name, q.qtype, q.edit)); got != q.answer {
				t.Errorf("%s: %s %s: answered %v, want %v", tc.what, q.name, dns.TypeToString[q.qtype], got, q.answer)
			}
		}
	}
}
