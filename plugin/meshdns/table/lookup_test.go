package table

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// variantEntries are hosts with variants that different namespaces see, for TestVariantsByEveryForm.
func variantEntries() []Entry {
	apiA := k8s("api.ns.svc.cluster.local", "api", "ns", "10.0.0.1")
	apiA.AltHosts = []string{"api.alt.example"}
	apiRest := k8s("api.ns.svc.cluster.local", "api", "ns", "10.0.0.2")
	apiRest.AltHosts = []string{"api.all.example"}
	kubeA := k8s("svc.ns2.svc.cluster.local", "svc", "ns2", "10.1.0.1")
	return []Entry{
		seen(apiA, []string{"a"}, nil),
		seen(apiRest, nil, []string{"c"}),
		seen(external("*.wild.example", "240.0.0.1"), []string{"a"}, nil),
		external("*.wild.example", "240.0.0.2"),
		seen(external("secret.wild.example", "240.0.0.9"), []string{"a"}, nil),
		seen(external("mix.example", "240.0.0.5"), []string{"a", "b"}, []string{"b"}),
		seen(kubeA, []string{"a"}, nil),
		external("svc.ns2.svc.cluster.local", "240.1.0.1"),
		k8s("other.ns.svc.cluster.local", "other", "ns", "10.9.0.1"),
	}
}

// firstA is the first address a table answers qname's A question with for a client in v, "" when the
// name is absent for it; it checks that the prepacked records (the fast path, the batched ingress)
// carry the same variant.
func firstA(t *testing.T, tbl *Table, qname string, v *View) string {
	t.Helper()
	m := tbl.Lookup(qname, v)
	if !m.Found() {
		return ""
	}
	rrs, ok := tbl.Answer(m, qname, dns.TypeA)
	if !ok {
		return "nodata"
	}
	a, isA := rrs[len(rrs)-1].(*dns.A)
	if !isA {
		return "not A"
	}
	if m.target == "" {
		if wire, n := tbl.AppendWire(nil, m, dns.TypeA); n != 1 || !net.IP(wire[len(wire)-4:]).Equal(a.A) {
			t.Errorf("%s from %q: prepacked %d records %v, answer %v", qname, v.Namespace, n, wire, a.A)
		}
	}
	return a.A.String()
}

func TestVariantsByEveryForm(t *testing.T) {
	views := map[string]*View{}
	for _, ns := range []string{"a", "b", "c", "ns", ""} {
		views[ns] = NewView(ns, nil, "cluster.local")
	}
	tests := []struct {
		qname string
		want  map[string]string // client namespace -> first address, "" absent
	}{
		{"api.ns.svc.cluster.local.", map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "c": "", "ns": "10.0.0.2", "": "10.0.0.2"}},
		{"API.Ns.svc.cluster.local.", map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "c": ""}},
		{"api.ns.", map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "c": ""}},
		{"api.ns.svc.", map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "c": ""}},
		{"api.", map[string]string{"ns": "10.0.0.2", "a": "", "b": ""}}, // bare: the host's own namespace only
		{"api.ns.svc.cluster.local.cluster.local.", map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "c": ""}},
		{"api.ns.cluster.local.", map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "c": ""}},
		// An alt host reaches only the variants that name it.
		{"api.alt.example.", map[string]string{"a": "10.0.0.1", "b": "", "c": ""}},
		{"api.all.example.", map[string]string{"a": "10.0.0.2", "b": "10.0.0.2", "c": ""}},
		// Wildcards: variants, and a host hidden from a client leaves it the wildcard.
		{"x.wild.example.", map[string]string{"a": "240.0.0.1", "b": "240.0.0.2", "c": "240.0.0.2"}},
		{"x.y.wild.example.", map[string]string{"a": "240.0.0.1", "b": "240.0.0.2"}},
		{"secret.wild.example.", map[string]string{"a": "240.0.0.9", "b": "240.0.0.2"}},
		// An allow-list with a hidden list.
		{"mix.example.", map[string]string{"a": "240.0.0.5", "b": "", "c": ""}},
		// A better rank limited to a: a gets the Service (and its short forms), the others the ServiceEntry.
		{"svc.ns2.svc.cluster.local.", map[string]string{"a": "10.1.0.1", "b": "240.1.0.1", "": "240.1.0.1"}},
		{"svc.ns2.", map[string]string{"a": "10.1.0.1", "b": ""}},
		{"other.ns.", map[string]string{"a": "10.9.0.1", "c": "10.9.0.1"}},
	}
	entries := variantEntries()
	whole := Build(entries, opts)
	// The same hosts as changes on a table that lacked them: the overlay must choose as Build does.
	changes := map[string][]Entry{}
	for _, e := range Merge(entries) {
		changes[e.Host] = append(changes[e.Host], e)
	}
	overlay := Build([]Entry{external("unrelated.example", "240.9.9.9")}, opts).Update(changes)
	for name, tbl := range map[string]*Table{"build": whole, "overlay": overlay} {
		for _, tt := range tests {
			for ns, want := range tt.want {
				if got := firstA(t, tbl, tt.qname, views[ns]); got != want {
					t.Errorf("%s: %s from %q: %q, want %q", name, tt.qname, ns, got, want)
				}
			}
		}
		if tbl.Len() != len(entries)-3+map[string]int{"build": 0, "overlay": 1}[name] {
			t.Errorf("%s: Len %d counts variants", name, tbl.Len())
		}
	}
}

// TestVariantPTR: only a variant every client sees has PTRs, which name the host.
func TestVariantPTR(t *testing.T) {
	tbl := Build(variantEntries(), opts)
	v := NewView("a", nil, "cluster.local")
	for q, want := range map[string]bool{
		"1.0.0.10.in-addr.arpa.":  false, // api's variant for a
		"2.0.0.10.in-addr.arpa.":  false, // api's hidden from c
		"1.0.1.10.in-addr.arpa.":  false, // svc.ns2's Service for a
		"1.0.1.240.in-addr.arpa.": true,  // svc.ns2's ServiceEntry for everyone
		"5.0.0.240.in-addr.arpa.": false,
	} {
		m := tbl.Lookup(q, v)
		if m.Found() != want {
			t.Errorf("%s: PTR %v, want %v", q, m.Found(), want)
		}
		if want {
			if rrs, _ := tbl.Answer(m, q, dns.TypePTR); len(rrs) != 1 || rrs[0].(*dns.PTR).Ptr != "svc.ns2.svc.cluster.local." {
				t.Errorf("%s: %v", q, rrs)
			}
		}
	}
}

// BenchmarkLookupVariant is a hit on a host with a variant for another namespace before the one the
// client gets: the chain costs one more visibility check.
func BenchmarkLookupVariant(b *testing.B) {
	tbl := Build(variantEntries(), opts)
	v := NewView("b", nil, "cluster.local")
	b.ReportAllocs()
	for b.Loop() {
		m := tbl.Lookup("api.ns.svc.cluster.local.", v)
		tbl.Answer(m, "api.ns.svc.cluster.local.", dns.TypeA)
	}
}

// TestHiddenClaimantGivesWay: a key whose best claimant a client may not see (an alt host limited to
// another namespace) is answered by the next form that client sees, the short form of a Service, as
// a table of that client's alone would.
func TestHiddenClaimantGivesWay(t *testing.T) {
	alt := seen(external("api.example.com", "240.0.0.1"), []string{"a"}, nil)
	alt.AltHosts = []string{"api.ns"}
	tbl := Build([]Entry{alt, k8s("api.ns.svc.cluster.local", "api", "ns", "10.0.0.1")}, opts)
	for ns, want := range map[string]string{"a": "240.0.0.1", "b": "10.0.0.1"} {
		if got := firstA(t, tbl, "api.ns.", NewView(ns, nil, "cluster.local")); got != want {
			t.Errorf("api.ns. from %s: %q, want %q", ns, got, want)
		}
	}
}
