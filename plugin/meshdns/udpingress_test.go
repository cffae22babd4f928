package meshdns

import (
	"strings"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/log"
)

func meshConfig(t *testing.T, zone string, above ...plugin.Plugin) *dnsserver.Config {
	m := newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough")
	cfg := &dnsserver.Config{Zone: zone, ListenHosts: []string{"127.0.0.1"}, Port: "53", Transport: "dns"}
	cfg.Plugin = append(cfg.Plugin, above...)
	cfg.AddPlugin(func(next plugin.Handler) plugin.Handler { m.Next = next; return m })
	return cfg
}

// routeOf reads CoreDNS's unexported routing by reflection: this pins the CoreDNS it was written for,
// and the zones it reports are those NewServer routes.
func TestRouteOfReadsThisCoreDNS(t *testing.T) {
	ours := meshConfig(t, ".")
	other := &dnsserver.Config{Zone: "cluster.local.", Transport: "dns"}
	other.AddPlugin(func(next plugin.Handler) plugin.Handler { return clog.Logger{Next: next} })
	s, err := dnsserver.NewServer("dns://127.0.0.1:53", []*dnsserver.Config{ours, other})
	if err != nil {
		t.Fatal(err)
	}
	route, why := routeOf(s, ours)
	if why != "" {
		t.Fatalf("routeOf: %s", why)
	}
	if len(route.zones) != 2 || !route.zones["."].ours || route.zones["cluster.local."].ours {
		t.Fatalf("zones %v, want . ours and cluster.local. not", route.zones)
	}
	for qname, want := range map[string]bool{"reviews.": true, "a.b.cluster.local.": false, "CLUSTER.LOCAL.": false, "x.local.": true} {
		if _, got := route.zone(qname); got != want {
			t.Errorf("%s: ours %v, want %v", qname, got, want)
		}
	}

	if _, why := routeOf(mustServer(t, "dns://:53", ours), ours); why != "" {
		t.Errorf("wildcard listener: %q", why)
	}
	if _, why := routeOf(mustServer(t, "dns://127.0.0.1:53", other), ours); !strings.Contains(why, "another block") {
		t.Errorf("none of the zones ours: %q", why)
	}
}

func mustServer(t *testing.T, addr string, cfgs ...*dnsserver.Config) *dnsserver.Server {
	s, err := dnsserver.NewServer(addr, cfgs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A plugin above meshdns that must see every query (log) turns the path off; errors does not.
func TestPluginAbove(t *testing.T) {
	withLog := meshConfig(t, ".", func(next plugin.Handler) plugin.Handler { return clog.Logger{Next: next} })
	mustServer(t, "dns://127.0.0.1:53", withLog)
	if why := pluginAbove(withLog); !strings.Contains(why, "log runs before meshdns") {
		t.Errorf("log above: %q", why)
	}
	plain := meshConfig(t, ".")
	mustServer(t, "dns://127.0.0.1:53", plain)
	if why := pluginAbove(plain); why != "" {
		t.Errorf("nothing above: %q", why)
	}
}

// A query routes to the longest zone that holds it, whatever its case, and at label boundaries only.
func TestZoneRouteTakesTheLongestZone(t *testing.T) {
	r := &zoneRoute{}
	r.set(".", true)
	r.set("cluster.local.", false)
	r.set("svc.cluster.local.", true)
	r.set("local.", true)
	for qname, want := range map[string]string{
		"a.svc.cluster.local.": "svc.cluster.local.",
		"A.SVC.Cluster.Local.": "svc.cluster.local.",
		"svc.cluster.local.":   "svc.cluster.local.",
		"b.cluster.local.":     "cluster.local.",
		"xsvc.cluster.local.":  "cluster.local.", // not at a label's start
		"x.local.":             "local.",
		"mylocal.":             ".",
		"example.org.":         ".",
		".":                    ".",
	} {
		got, ours := r.zone(qname)
		if got != want || ours != r.zones[want].ours {
			t.Errorf("%s: zone %s (ours %v), want %s (ours %v)", qname, got, ours, want, r.zones[want].ours)
		}
	}
}

// plainZones match as plugin.Zones do, for the names the batched path reads.
func TestPlainZonesMatchAsPluginZones(t *testing.T) {
	zones := [][]string{{"."}, {"cluster.local."}, {"cluster.local.", "svc.cluster.local.", "example.com."}, {".", "local."}, nil}
	for _, zs := range zones {
		for _, qname := range []string{".", "cluster.local.", "CLUSTER.Local.", "a.svc.cluster.local.", "xcluster.local.", "local.",
			"a.local.", "example.com.", "www.Example.COM.", "example.org.", "com."} {
			if got, want := plainZones(zs).matches(qname), plugin.Zones(zs).Matches(qname); got != want {
				t.Errorf("zones %v, %s: %q, want %q", zs, qname, got, want)
			}
		}
	}
}
