package meshdns

import (
	"context"
	"net/netip"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/plugin/test"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

// entriesSource hands the store a fixed list of entries, standing in for a source whose records the
// file format cannot carry (SRV, TXT, authoritative zones come from the kubernetes source).
type entriesSource []table.Entry

func (entriesSource) Kind() string                              { return "entries" }
func (entriesSource) String() string                            { return "entries" }
func (entriesSource) Run(ctx context.Context, sink source.Sink) { <-ctx.Done() }

var _ source.Source = entriesSource(nil)

// newEntriesMeshDNS is a plugin serving entries, falling through everywhere (to REFUSED).
func newEntriesMeshDNS(t *testing.T, entries []table.Entry) *MeshDNS {
	t.Helper()
	m := &MeshDNS{Zones: []string{"."}, Fall: fall.Root, Next: test.NextHandler(dns.RcodeRefused, nil)}
	m.view = table.NewView("", nil, "cluster.local")
	m.views = newViews(nil, "cluster.local")
	m.store = newStore(table.Options{ClusterDomain: "cluster.local", TTL: 30})
	m.store.add(entriesSource(entries), entries)
	m.store.primed()
	m.store.start("dns://test")
	t.Cleanup(m.store.stop)
	return m
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestAuthoritativeZone checks the records a zone of the kubernetes source's clusterset kind gets:
// NXDOMAIN for absent names though the plugin falls through, NODATA for empty non-terminals, the SOA
// at the apex, TXT, and SRV with the targets' addresses in Additional.
func TestAuthoritativeZone(t *testing.T) {
	m := newEntriesMeshDNS(t, []table.Entry{
		{Host: "clusterset.local", Authoritative: true},
		{Host: "dns-version.clusterset.local", TXT: []string{"1.0.0"}},
		{Host: "web.shop.svc.clusterset.local", Addrs: addrs("10.42.0.1", "fd42::1")},
		{Host: "_http._tcp.web.shop.svc.clusterset.local", SRV: []table.SRV{{Weight: 100, Port: 80, Target: "web.shop.svc.clusterset.local"}}},
		{Host: "db-0.east.db.shop.svc.clusterset.local", Addrs: addrs("10.1.0.5")},
		{Host: "_pg._tcp.db.shop.svc.clusterset.local", SRV: []table.SRV{{Weight: 100, Port: 5432, Target: "db-0.east.db.shop.svc.clusterset.local"}}},
		{Host: "api.example.com", Addrs: addrs("240.240.0.1")},
	})
	zoneSOA := soa("clusterset.local.")
	runCases(t, m, []test.Case{
		{Qname: "dns-version.clusterset.local.", Qtype: dns.TypeTXT, Answer: []dns.RR{test.TXT(`dns-version.clusterset.local. 30 IN TXT "1.0.0"`)}},
		{Qname: "web.shop.svc.clusterset.local.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("web.shop.svc.clusterset.local. 30 IN A 10.42.0.1")}},
		{Qname: "web.shop.svc.clusterset.local.", Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA("web.shop.svc.clusterset.local. 30 IN AAAA fd42::1")}},
		{Qname: "web.shop.svc.clusterset.local.", Qtype: dns.TypeTXT, Ns: []dns.RR{zoneSOA}},
		{Qname: "_http._tcp.web.shop.svc.clusterset.local.", Qtype: dns.TypeSRV,
			Answer: []dns.RR{test.SRV("_http._tcp.web.shop.svc.clusterset.local. 30 IN SRV 0 100 80 web.shop.svc.clusterset.local.")},
			Extra:  []dns.RR{test.A("web.shop.svc.clusterset.local. 30 IN A 10.42.0.1"), test.AAAA("web.shop.svc.clusterset.local. 30 IN AAAA fd42::1")}},
		{Qname: "_http._tcp.web.shop.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{zoneSOA}},
		{Qname: "_pg._tcp.db.shop.svc.clusterset.local.", Qtype: dns.TypeSRV,
			Answer: []dns.RR{test.SRV("_pg._tcp.db.shop.svc.clusterset.local. 30 IN SRV 0 100 5432 db-0.east.db.shop.svc.clusterset.local.")},
			Extra:  []dns.RR{test.A("db-0.east.db.shop.svc.clusterset.local. 30 IN A 10.1.0.5")}},
		// Empty non-terminals: NODATA.
		{Qname: "shop.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{zoneSOA}},
		{Qname: "_tcp.web.shop.svc.clusterset.local.", Qtype: dns.TypeSRV, Ns: []dns.RR{zoneSOA}},
		{Qname: "east.db.shop.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{zoneSOA}},
		// Absent names: NXDOMAIN from us, though everything else falls through.
		{Qname: "east.web.shop.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{zoneSOA}},
		{Qname: "nothing.shop.svc.clusterset.local.", Qtype: dns.TypeAAAA, Rcode: dns.RcodeNameError, Ns: []dns.RR{zoneSOA}},
		{Qname: "_https._tcp.web.shop.svc.clusterset.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: []dns.RR{zoneSOA}},
		{Qname: "nothing.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		// The apex.
		{Qname: "clusterset.local.", Qtype: dns.TypeSOA, Answer: []dns.RR{zoneSOA}},
		{Qname: "ClusterSet.Local.", Qtype: dns.TypeA, Ns: []dns.RR{zoneSOA}},
		// Other hosts keep their own SOA, and no SOA answer.
		{Qname: "api.example.com.", Qtype: dns.TypeSOA, Ns: []dns.RR{soa("api.example.com.")}},
	})
}
