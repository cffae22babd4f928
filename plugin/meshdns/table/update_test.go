package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// randomEntry makes entries that collide often: few short names and namespaces, alt hosts that are
// other hosts' short forms, wildcards over other hosts, Kubernetes and external registries.
func randomEntry(r *rand.Rand, host string) Entry {
	e := Entry{Host: host, Registry: RegistryExternal}
	if strings.HasSuffix(host, ".svc.cluster.local") && r.IntN(4) > 0 {
		e.Registry = RegistryKubernetes
	}
	for range r.IntN(3) {
		e.Addrs = append(e.Addrs, netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(8))}))
	}
	if r.IntN(5) == 0 {
		e.Addrs = append(e.Addrs, netip.MustParseAddr(fmt.Sprintf("fd00::%d", r.IntN(8))))
	}
	if r.IntN(6) == 0 {
		e.AltHosts = append(e.AltHosts, fmt.Sprintf("s%d.n%d", r.IntN(4), r.IntN(3))) // another host's short form
	}
	if strings.HasPrefix(host, "_") {
		for range 1 + r.IntN(2) {
			e.SRV = append(e.SRV, SRV{Port: uint16(80 + r.IntN(3)), Target: fmt.Sprintf("p%d.c0.s%d.n0.svc.clusterset.local", r.IntN(2), r.IntN(2))})
		}
	}
	if r.IntN(8) == 0 {
		e.TXT = []string{fmt.Sprint(r.IntN(3))}
	}
	if r.IntN(12) == 0 {
		e.Alias = fmt.Sprintf("s%d.n%d.svc.cluster.local", r.IntN(4), r.IntN(3))
	}
	if r.IntN(7) == 0 {
		e.VisibleTo = []string{fmt.Sprintf("n%d", r.IntN(2))}
	}
	return e
}

// randomVariants makes a host's entries as sources give them: often one, else several with random
// visibility, some identical but for it (per-namespace copies), in random registries.
func randomVariants(r *rand.Rand, host string) []Entry {
	out := []Entry{randomEntry(r, host)}
	if r.IntN(2) == 0 {
		return out
	}
	randomNamespaces := func() []string {
		list := []string{}
		for range r.IntN(3) {
			list = append(list, fmt.Sprintf("n%d", r.IntN(3)))
		}
		return list
	}
	for range 1 + r.IntN(4) {
		var e Entry
		if r.IntN(2) == 0 {
			e = out[r.IntN(len(out))] // the same data, seen by others
		} else {
			e = randomEntry(r, host)
		}
		e.VisibleTo, e.HiddenFrom = nil, nil
		switch r.IntN(4) {
		case 0, 1:
			e.VisibleTo = randomNamespaces()
		case 2:
			e.HiddenFrom = randomNamespaces()
		case 3:
			e.VisibleTo, e.HiddenFrom = randomNamespaces(), randomNamespaces()
		}
		out = append(out, e)
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func randomHost(r *rand.Rand) string {
	switch r.IntN(9) {
	case 6:
		return fmt.Sprintf("s%d.n%d.svc.clusterset.local", r.IntN(2), r.IntN(2))
	case 7:
		return fmt.Sprintf("p%d.c%d.s%d.n0.svc.clusterset.local", r.IntN(2), r.IntN(2), r.IntN(2))
	case 8:
		return fmt.Sprintf("_http._tcp.s%d.n0.svc.clusterset.local", r.IntN(2))
	case 0:
		return fmt.Sprintf("*.x%d.example.com", r.IntN(3))
	case 1:
		return "*.example.com"
	case 2:
		return fmt.Sprintf("h%d.x%d.example.com", r.IntN(4), r.IntN(3))
	case 3:
		return fmt.Sprintf("p%d.s%d.n%d.svc.cluster.local", r.IntN(2), r.IntN(4), r.IntN(3))
	}
	return fmt.Sprintf("s%d.n%d.svc.cluster.local", r.IntN(4), r.IntN(3))
}

// outcome renders what a table answers to qname for every type, for comparing two tables.
func outcome(t *Table, qname string, v *View) string {
	m := t.Lookup(qname, v)
	if !m.Found() {
		return fmt.Sprintf("miss nxdomain %v %s", m.NXDomain(), m.Zone())
	}
	out := []string{"zone " + m.Zone()}
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeSRV, dns.TypeTXT, dns.TypeSOA} {
		rrs, ok := t.Answer(m, qname, qt)
		var ss []string
		for _, rr := range rrs {
			if soa, ok := rr.(*dns.SOA); ok {
				soa.Serial = 0 // the time of the build
			}
			h := rr.Header()
			ss = append(ss, fmt.Sprintf("%s %d %s", h.Name, h.Ttl, strings.TrimPrefix(rr.String(), h.String())))
		}
		slices.Sort(ss) // rotation aside
		out = append(out, fmt.Sprintf("%s %v %v", dns.TypeToString[qt], ok, ss))
	}
	return m.Host() + " " + strings.Join(out, " | ")
}

// TestUpdateAnswersAsBuild applies random changes through Update, one batch after another, and checks
// that every name form of every host, and more, answers as a table built whole from the same entries.
func TestUpdateAnswersAsBuild(t *testing.T) {
	views := []*View{NewView("", nil, "cluster.local"), NewView("n0", nil, "cluster.local"), NewView("n1", nil, "cluster.local"), NewView("n2", nil, "cluster.local")}
	var queries []string
	for s := range 4 {
		for n := range 3 {
			for _, f := range []string{"s%d.n%d.svc.cluster.local.", "s%d.n%d.", "s%d.n%d.svc.", "s%d.", "p0.s%d.n%d.svc.cluster.local.", "p1.s%d.n%d.", "s%d.n%d.svc.cluster.local.n0.svc.cluster.local."} {
				queries = append(queries, strings.Replace(fmt.Sprintf(f, s, n), "%!d(MISSING)", "", 1))
			}
		}
	}
	for h := range 4 {
		for x := range 3 {
			queries = append(queries, fmt.Sprintf("h%d.x%d.example.com.", h, x), fmt.Sprintf("a.b.x%d.example.com.", x), fmt.Sprintf("x%d.example.com.", x))
		}
	}
	for c := range 4 {
		for d := range 8 {
			queries = append(queries, fmt.Sprintf("%d.%d.0.10.in-addr.arpa.", d, c))
		}
	}
	queries = append(queries, "example.com.", "zz.example.com.", "nothing.svc.cluster.local.")
	for _, f := range []string{"s%d.n%d.svc.clusterset.local.", "p%d.c%d.s0.n0.svc.clusterset.local.", "c%d.s%d.n0.svc.clusterset.local.",
		"_http._tcp.s%d.n%d.svc.clusterset.local.", "_tcp.s%d.n%d.svc.clusterset.local.", "n%d.svc.clusterset.local.%.0d"} {
		for a := range 2 {
			for b := range 2 {
				queries = append(queries, fmt.Sprintf(f, a, b))
			}
		}
	}
	queries = append(queries, "clusterset.local.", "svc.clusterset.local.", "zz.clusterset.local.")

	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 1))
		state := map[string][]Entry{"clusterset.local.": {{Host: "clusterset.local", Authoritative: true}}} // canonical host -> entries
		for range 30 {
			h := randomHost(r)
			state[canonicalHost(h)] = randomVariants(r, h)
		}
		full := func() *Table {
			var es []Entry
			for _, e := range state {
				es = append(es, e...)
			}
			return Build(es, opts)
		}
		tbl := full()
		for batch := range 12 {
			changes := map[string][]Entry{}
			for range 1 + r.IntN(4) {
				h := randomHost(r)
				ch := canonicalHost(h)
				if _, ok := state[ch]; ok && r.IntN(3) == 0 {
					delete(state, ch)
					changes[ch] = nil
					continue
				}
				state[ch] = randomVariants(r, h)
				changes[ch] = Merge(state[ch]) // as the store hands them over
			}
			if tbl.NeedsBuild(changes) {
				t.Fatalf("seed %d batch %d: changes %v need a build", seed, batch, changes)
			}
			tbl = tbl.Update(changes)
			want := full()
			if tbl.Len() != want.Len() {
				t.Fatalf("seed %d batch %d: Len %d, want %d", seed, batch, tbl.Len(), want.Len())
			}
			for _, v := range views {
				for _, q := range queries {
					if got, want := outcome(tbl, q, v), outcome(want, q, v); got != want {
						for h, es := range state {
							t.Logf("%s: %+v", h, Merge(es))
						}
						t.Logf("changes %+v", changes)
						t.Fatalf("seed %d batch %d, %s from %q:\n got  %s\n want %s", seed, batch, q, v.Namespace, got, want)
					}
				}
			}
		}
	}
}

// TestUpdateVariants: a change replaces every variant of a host, in the base or the overlay, with the
// variants it gives, and a rival host sharing a short form keeps its place beside them.
func TestUpdateVariants(t *testing.T) {
	api := func(addr string, to ...string) Entry { return seen(external("api.example.com", addr), to, nil) }
	rival := k8s("api.ns.svc.cluster.local", "api", "ns", "10.0.0.1")
	rival.VisibleTo = []string{"b"}
	alt := api("240.0.0.3")
	alt.AltHosts = []string{"api.ns"} // the rival's short form: an alt host wins it
	views := map[string]*View{"a": NewView("a", nil, "cluster.local"), "b": NewView("b", nil, "cluster.local"), "c": NewView("c", nil, "cluster.local")}
	steps := []struct {
		name    string
		entries []Entry // api's, nil when gone
		want    map[string]string
	}{
		{"variants for a and the rest", []Entry{api("240.0.0.1", "a"), api("240.0.0.2")}, map[string]string{"a": "240.0.0.1", "b": "240.0.0.2", "c": "240.0.0.2"}},
		{"one entry for all", []Entry{api("240.0.0.2")}, map[string]string{"a": "240.0.0.2", "b": "240.0.0.2", "c": "240.0.0.2"}},
		{"folded copies for a and b", []Entry{api("240.0.0.1", "a"), api("240.0.0.1", "b")}, map[string]string{"a": "240.0.0.1", "b": "240.0.0.1", "c": ""}},
		{"gone", nil, map[string]string{"a": "", "b": "", "c": ""}},
		{"an alt host on the rival's short form", []Entry{api("240.0.0.1", "a"), alt}, map[string]string{"a": "240.0.0.1", "b": "240.0.0.3", "c": "240.0.0.3"}},
	}
	base := []Entry{rival, api("240.0.0.9", "c"), api("240.0.0.8")}
	tbl := Build(base, opts)
	for _, step := range steps {
		tbl = tbl.Update(map[string][]Entry{"api.example.com": Merge(step.entries)})
		whole := Build(append([]Entry{rival}, step.entries...), opts)
		for ns, want := range step.want {
			for name, tb := range map[string]*Table{"overlay": tbl, "build": whole} {
				if got := firstA(t, tb, "api.example.com.", views[ns]); got != want {
					t.Errorf("%s, %s from %s: %q, want %q", step.name, name, ns, got, want)
				}
			}
			for _, q := range []string{"api.ns.", "api.ns.svc.cluster.local."} {
				if got, want := outcome(tbl, q, views[ns]), outcome(whole, q, views[ns]); got != want {
					t.Errorf("%s, %s from %s:\n got  %s\n want %s", step.name, q, ns, got, want)
				}
			}
		}
		if tbl.Len() != whole.Len() {
			t.Errorf("%s: Len %d, want %d", step.name, tbl.Len(), whole.Len())
		}
	}
}
