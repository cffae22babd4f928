package table

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func k8s(host, short, ns string, ips ...string) Entry {
	return Entry{Host: host, Addrs: addrs(ips...), Registry: RegistryKubernetes, ShortName: short, Namespace: ns}
}

func external(host string, ips ...string) Entry {
	return Entry{Host: host, Addrs: addrs(ips...), Registry: RegistryExternal}
}

var opts = Options{ClusterDomain: "cluster.local", TTL: 30}

func TestLookupForms(t *testing.T) {
	tbl := Build([]Entry{
		k8s("reviews.default.svc.cluster.local", "reviews", "default", "10.0.0.1"),
		k8s("reviews.other.svc.cluster.local", "reviews", "other", "10.0.0.2"),
		k8s("db-0.db.data.svc.cluster.local", "db-0.db", "data", "10.0.0.3"),
		k8s("odd.corp.local", "odd", "corp", "10.0.0.4"), // Kubernetes, but outside the cluster domain
		external("api.example.com", "240.0.0.1"),
		external("*.example.com", "240.0.0.2"),
		external("*.deep.example.com", "240.0.0.3"),
	}, opts)
	v := NewView("default", nil, "cluster.local")
	tests := []struct {
		qname, host, target string
	}{
		{"reviews.default.svc.cluster.local.", "reviews.default.svc.cluster.local.", ""},
		{"REVIEWS.Default.SVC.cluster.local.", "reviews.default.svc.cluster.local.", ""},
		{"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local.", ""}, // not fully qualified
		{"reviews.", "reviews.default.svc.cluster.local.", ""},
		{"reviews.other.", "reviews.other.svc.cluster.local.", ""},
		{"reviews.other.svc.", "reviews.other.svc.cluster.local.", ""},
		{"db-0.db.data.", "db-0.db.data.svc.cluster.local.", ""},
		{"db-0.db.", "", ""},
		{"odd.", "", ""},
		{"odd.corp.", "", ""},
		{"reviews.svc.cluster.local.", "reviews.default.svc.cluster.local.", "reviews.default.svc.cluster.local."}, // bare + "svc.cluster.local"
		{"reviews.other.cluster.local.", "reviews.other.svc.cluster.local.", "reviews.other.svc.cluster.local."},
		{"reviews.default.svc.cluster.local.default.svc.cluster.local.", "reviews.default.svc.cluster.local.", "reviews.default.svc.cluster.local."},
		{"api.example.com.", "api.example.com.", ""},
		{"api.example.com.cluster.local.", "api.example.com.", "api.example.com."},
		{"x.example.com.", "*.example.com.", ""},
		{"x.y.example.com.", "*.example.com.", ""},
		{"x.deep.example.com.", "*.deep.example.com.", ""},
		{"X.Deep.Example.Com.svc.cluster.local.", "*.deep.example.com.", "X.Deep.Example.Com."},
		{"deep.example.com.", "*.example.com.", ""},
		{"example.com.", "", ""},
		{"com.", "", ""},
		{".", "", ""},
		{"", "", ""},
		{"svc.cluster.local.", "", ""},
		{"a\\.example.com.", "", ""}, // one label "a.example" under com.: not under example.com
		{"x.example\\.com.", "", ""},
	}
	for _, tc := range tests {
		m := tbl.Lookup(tc.qname, v)
		if m.Host() != tc.host || m.target != tc.target {
			t.Errorf("Lookup(%q) = host %q target %q, want %q %q", tc.qname, m.Host(), m.target, tc.host, tc.target)
		}
		if m.Found() != (tc.host != "") {
			t.Errorf("Lookup(%q).Found() = %v", tc.qname, m.Found())
		}
	}
}

func TestCollisionsResolveTheSameWay(t *testing.T) {
	// The Kubernetes host "foo.bar" short form collides with an external host of the same name, and
	// with another entry's alt host: the canonical host wins, then alt hosts, then short forms.
	entries := []Entry{
		k8s("foo.bar.svc.cluster.local", "foo", "bar", "10.0.0.1"),
		external("foo.bar", "240.0.0.1"),
		{Host: "other.example", Addrs: addrs("240.0.0.2"), AltHosts: []string{"foo.bar.svc", "shared.alias"}},
		{Host: "third.example", Addrs: addrs("240.0.0.3"), AltHosts: []string{"shared.alias"}},
	}
	v := NewView("", nil, "cluster.local")
	for range 5 {
		slices.Reverse(entries)
		tbl := Build(entries, opts)
		for q, want := range map[string]string{
			"foo.bar.":      "foo.bar.",
			"foo.bar.svc.":  "other.example.",
			"shared.alias.": "other.example.",
		} {
			if got := tbl.Lookup(q, v).Host(); got != want {
				t.Errorf("%s -> %s, want %s", q, got, want)
			}
		}
	}
}

func TestMergePrecedence(t *testing.T) {
	got := Merge(
		[]Entry{external("svc.ns.svc.cluster.local", "240.0.0.1"), external("b.example", "240.0.0.5")},
		[]Entry{k8s("SVC.ns.svc.cluster.local.", "svc", "ns", "10.0.0.1")},
		[]Entry{external("b.example", "240.0.0.6", "240.0.0.5"), k8s("svc.ns.svc.cluster.local", "svc", "ns", "10.0.0.2")},
	)
	if len(got) != 2 {
		t.Fatalf("merged into %d entries: %+v", len(got), got)
	}
	// Hosts come out in the order they first appear.
	if got[1].Host != "b.example" || !slices.Equal(got[1].Addrs, addrs("240.0.0.5", "240.0.0.6")) {
		t.Errorf("equal ranks should union addresses: %+v", got[1])
	}
	if got[0].Registry != RegistryKubernetes || !slices.Equal(got[0].Addrs, addrs("10.0.0.1", "10.0.0.2")) {
		t.Errorf("the Kubernetes Service should win over the ServiceEntry, then union: %+v", got[0])
	}
}

func TestMergeDoesNotModifyInput(t *testing.T) {
	a := []Entry{external("x.example", "240.0.0.1")}
	a[0].Addrs = append(make([]netip.Addr, 0, 4), a[0].Addrs...) // room to append in place
	b := []Entry{external("x.example", "240.0.0.2")}
	c := []Entry{external("x.example", "240.0.0.3")}
	out := Merge(a, b, c)
	if len(a[0].Addrs) != 1 || a[0].Addrs[:2][1].IsValid() {
		t.Errorf("Merge wrote into its input: %v", a[0].Addrs[:2])
	}
	if !slices.Equal(out[0].Addrs, addrs("240.0.0.1", "240.0.0.2", "240.0.0.3")) {
		t.Errorf("merged %v", out[0].Addrs)
	}
}

func TestAnswers(t *testing.T) {
	tbl := Build([]Entry{
		k8s("web.ns.svc.cluster.local", "web", "ns", "10.0.0.1", "fd00::1", "::ffff:10.0.0.2"),
	}, Options{ClusterDomain: "cluster.local", TTL: 7})
	v := NewView("ns", nil, "cluster.local")
	m := tbl.Lookup("Web.", v)
	rrs, ok := tbl.Answer(m, "Web.", dns.TypeA)
	if !ok || len(rrs) != 2 {
		t.Fatalf("A: %v %v", rrs, ok)
	}
	for _, rr := range rrs {
		if rr.Header().Name != "Web." || rr.Header().Ttl != 7 || rr.Header().Class != dns.ClassINET {
			t.Errorf("bad header %v", rr)
		}
	}
	if rrs, ok := tbl.Answer(m, "Web.", dns.TypeAAAA); !ok || len(rrs) != 1 || rrs[0].(*dns.AAAA).AAAA.String() != "fd00::1" {
		t.Errorf("AAAA: %v %v", rrs, ok)
	}
	for _, qt := range []uint16{dns.TypeMX, dns.TypeTXT, dns.TypeSRV, dns.TypePTR, dns.TypeANY, dns.TypeCNAME} {
		if rrs, ok := tbl.Answer(m, "Web.", qt); ok || len(rrs) != 0 {
			t.Errorf("%s: want NODATA, got %v %v", dns.TypeToString[qt], rrs, ok)
		}
	}
	cm := tbl.Lookup("web.ns.svc.cluster.local.ns.svc.cluster.local.", v)
	if rrs, ok := tbl.Answer(cm, "web.ns.svc.cluster.local.ns.svc.cluster.local.", dns.TypeCNAME); !ok || len(rrs) != 1 {
		t.Errorf("CNAME question for a search-suffixed name: %v %v", rrs, ok)
	}
	soa := tbl.SOA("cluster.local.")
	if soa.Minttl != 7 || soa.Hdr.Ttl != 7 || soa.Ns != "ns.dns.cluster.local." || soa.Mbox != "hostmaster.cluster.local." {
		t.Errorf("SOA %v", soa)
	}
	if tbl.Len() != 1 {
		t.Errorf("Len %d", tbl.Len())
	}
}

// TestVisibleTo: a name limited to a namespace is answered to its clients only, by every form, has
// no PTR, and in a merge lends its addresses to no entry some other client sees.
func TestVisibleTo(t *testing.T) {
	private := external("db.example", "240.0.0.1")
	private.VisibleTo = []string{"Shop"}
	svc := k8s("cart.shop.svc.cluster.local", "cart", "shop", "10.0.0.1")
	svc.VisibleTo = []string{"shop"}
	tbl := Build([]Entry{private, svc}, opts)
	shop, other := NewView("shop", nil, "cluster.local"), NewView("bank", nil, "cluster.local")
	for _, q := range []string{"db.example.", "cart.shop.svc.cluster.local.", "cart.", "cart.shop.", "cart.shop.svc.cluster.local.shop.svc.cluster.local."} {
		if m := tbl.Lookup(q, shop); !m.Found() {
			t.Errorf("%s: not found from its namespace", q)
		}
	}
	for _, q := range []string{"db.example.", "cart.shop.svc.cluster.local.", "cart.shop.", "cart.shop.svc.cluster.local.bank.svc.cluster.local.", "1.0.0.240.in-addr.arpa.", "1.0.0.10.in-addr.arpa."} {
		if m := tbl.Lookup(q, other); m.Found() {
			t.Errorf("%s: found from another namespace", q)
		}
	}
	if m := tbl.Lookup("1.0.0.10.in-addr.arpa.", shop); m.Found() {
		t.Errorf("a limited name has a PTR")
	}

	// Merged with an entry every client sees, the limited one answers its clients if it comes first,
	// and no one if it comes after (merge_test.go has the rest of the rules).
	public := external("db.example", "240.0.0.2")
	if got := Merge([]Entry{public, private}); len(got) != 1 || got[0].VisibleTo != nil {
		t.Errorf("a limited entry after one every client sees: %+v", got)
	}
	tbl = Build([]Entry{private, public}, opts)
	for v, want := range map[*View]string{shop: "240.0.0.1", other: "240.0.0.2"} {
		if rrs, _ := tbl.Answer(tbl.Lookup("db.example.", v), "db.example.", dns.TypeA); len(rrs) != 1 || rrs[0].(*dns.A).A.String() != want {
			t.Errorf("from %s: %v, want %s", v.Namespace, rrs, want)
		}
	}
}

func TestAliases(t *testing.T) {
	alias := k8s("ext.ns.svc.cluster.local", "ext", "ns", "10.9.9.9") // addresses of an alias are ignored
	alias.Alias = "API.Example.com"
	tbl := Build([]Entry{alias}, opts)
	v := NewView("ns", nil, "cluster.local")
	for _, qname := range []string{"ext.ns.svc.cluster.local.", "ext.", "ext.ns."} {
		m := tbl.Lookup(qname, v)
		if m.Alias() != "api.example.com." {
			t.Fatalf("%s: alias %q", qname, m.Alias())
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeCNAME} {
			rrs, ok := tbl.Answer(m, qname, qt)
			if !ok || len(rrs) != 1 || rrs[0].Header().Name != qname || rrs[0].(*dns.CNAME).Target != "api.example.com." {
				t.Errorf("%s %s: %v %v", qname, dns.TypeToString[qt], rrs, ok)
			}
		}
		if _, n := tbl.AppendWire(nil, m, dns.TypeA); n != 0 {
			t.Errorf("%s: an alias has no prepacked records", qname)
		}
		if _, ok := tbl.AppendNoData(nil, m, dns.TypeAAAA, "cluster.local.", 0); ok {
			t.Errorf("%s: an alias is never NODATA", qname)
		}
	}
	// Through a search domain: the search CNAME, then the alias's.
	qname := "ext.ns.svc.cluster.local.ns.svc.cluster.local."
	rrs, ok := tbl.Answer(tbl.Lookup(qname, v), qname, dns.TypeA)
	if !ok || len(rrs) != 2 || rrs[1].Header().Name != "ext.ns.svc.cluster.local." {
		t.Errorf("search-suffixed alias: %v %v", rrs, ok)
	}
	if m := tbl.Lookup("9.9.9.10.in-addr.arpa.", v); m.Found() {
		t.Errorf("an alias's ignored address has a PTR")
	}
}

func TestViews(t *testing.T) {
	v := NewView("prod", nil, "Cluster.Local.")
	if got := v.Search(); !slices.Equal(got, []string{"prod.svc.cluster.local", "svc.cluster.local", "cluster.local"}) {
		t.Errorf("default search %v", got)
	}
	if got := NewView("", nil, "cluster.local").Search(); !slices.Equal(got, []string{"svc.cluster.local", "cluster.local"}) {
		t.Errorf("default search without namespace %v", got)
	}
	if got := NewView("x", []string{"A.example.", ".", "b.example"}, "cluster.local").Search(); !slices.Equal(got, []string{"a.example", "b.example"}) {
		t.Errorf("explicit search %v", got)
	}
}

func TestValidateHost(t *testing.T) {
	for _, ok := range []string{"a", "a.b", "a.b.", "*.a.b", "x-1.y_2.z", "xn--bcher-kva.example"} {
		if err := ValidateHost(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	long := ""
	for len(long) < 250 {
		long += "abcdefghi."
	}
	for _, bad := range []string{"", ".", "a..b", "*", "a.*", "a*.b", "*.*.b", "**.b", long + "abcdef", "a b.c"} {
		if err := ValidateHost(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
