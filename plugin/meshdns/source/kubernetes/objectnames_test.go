package kubernetes

import (
	"net/netip"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

func TestEntriesSum(t *testing.T) {
	base := table.Entry{Host: "web.shop.svc.cluster.local.", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Registry: table.RegistryKubernetes, ShortName: "web", Namespace: "shop"}
	variants := map[string]func(*table.Entry){
		"address":     func(e *table.Entry) { e.Addrs = []netip.Addr{netip.MustParseAddr("10.0.0.2")} },
		"v4-mapped":   func(e *table.Entry) { e.Addrs = []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")} },
		"host":        func(e *table.Entry) { e.Host = "api.shop.svc.cluster.local." },
		"alias":       func(e *table.Entry) { e.Alias = "example.com" },
		"srv":         func(e *table.Entry) { e.SRV = []table.SRV{{Port: 80, Target: "x."}} },
		"txt":         func(e *table.Entry) { e.TXT = []string{"v"} },
		"authority":   func(e *table.Entry) { e.Authoritative = true },
		"no one sees": func(e *table.Entry) { e.VisibleTo = []string{} },
		"short name":  func(e *table.Entry) { e.ShortName, e.Namespace = "webs", "hop" },
	}
	sum := entriesSum([]table.Entry{base})
	if again := base; entriesSum([]table.Entry{again}) != sum {
		t.Fatal("the same entries sum differently")
	}
	for name, change := range variants {
		e := base
		change(&e)
		if entriesSum([]table.Entry{e}) == sum {
			t.Errorf("%s: changed entries sum the same", name)
		}
	}
	if entriesSum(nil) == sum || entriesSum([]table.Entry{base, base}) == sum {
		t.Error("a different count sums the same")
	}
}

func TestSetMarksChangedHostsOnly(t *testing.T) {
	s := &Source{cfg: &Config{}, meta: map[string]objectMeta{}}
	db := []table.Entry{{Host: "db.data.svc.cluster.local."}, {Host: "db-0.db.data.svc.cluster.local.", Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}}
	s.set("s/data/db", db)
	if len(s.changed) != 2 {
		t.Fatalf("first set: changed %v", s.changed)
	}
	s.changed = nil
	s.recent = nil // as at the end of a flush: the entries are not kept
	s.set("s/data/db", []table.Entry{db[0], db[1]})
	if len(s.changed) != 0 {
		t.Errorf("the same entries again: changed %v", s.changed)
	}
	s.set("s/data/db", db[:1])
	if len(s.changed) != 2 || len(s.hosts.all()) != 1 || len(s.hosts.hosts("s/data/db")) != 1 {
		t.Errorf("a per-pod name gone: changed %v, hosts %v", s.changed, s.hosts.all())
	}
	s.set("s/data/db", nil)
	if len(s.hosts.hostsOf) != 0 || len(s.hosts.named) != 0 || len(s.sums) != 0 {
		t.Errorf("deleted: hosts %v, by key %v", s.hosts.named, s.hosts.hostsOf)
	}
}

// TestFirstObjectWithMeta is the first flush's order: an object's visibility, then its entries.
func TestFirstObjectWithMeta(t *testing.T) {
	s := &Source{cfg: &Config{}, meta: map[string]objectMeta{}}
	s.setMeta("s/shop/web", serviceMeta(kept(service("shop", "web", "10.96.0.1"))))
	s.set("s/shop/web", []table.Entry{{Host: "web.shop.svc.cluster.local."}})
	if len(s.changed) != 1 || len(s.snapshot()) != 1 {
		t.Errorf("changed %v", s.changed)
	}
}

func TestHostRun(t *testing.T) {
	es := []table.Entry{{Host: "a.ns.svc.cluster.local."}, {Host: "p.a.ns.svc.cluster.local."}, {Host: "P.A.ns.svc.cluster.local"},
		{Host: "q.a.ns.svc.cluster.local."}, {Host: "p.a.ns.svc.cluster.local."}}
	for _, tc := range []struct {
		host string
		want []int // indexes into es
	}{
		{"a.ns.svc.cluster.local.", []int{0}},
		{"p.a.ns.svc.cluster.local.", []int{1, 2, 4}}, // a second run: copied together
		{"q.a.ns.svc.cluster.local.", []int{3}},
		{"r.a.ns.svc.cluster.local.", nil},
	} {
		got := hostRun(es, tc.host)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d entries, want %d", tc.host, len(got), len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if got[i].Host != es[w].Host {
				t.Errorf("%s: entry %d is %q, want %q", tc.host, i, got[i].Host, es[w].Host)
			}
		}
		if aliased := len(got) > 0 && &got[0] == &es[tc.want[0]]; aliased && cap(got) != len(got) {
			t.Errorf("%s: cap %d past its %d entries: an append would write over the object's next", tc.host, cap(got), len(got))
		}
	}
}
