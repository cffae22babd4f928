package multicluster

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func exportsOf(ready int, ips ...string) map[string]exportedService {
	es := exportedService{ready: ready}
	for _, s := range ips {
		es.clusterIPs = append(es.clusterIPs, netip.MustParseAddr(s))
	}
	return map[string]exportedService{"shop/web": es}
}

func gw(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }

func TestChoose(t *testing.T) {
	here := Locality{Region: "eu", Zone: "eu-1"}
	local := func(ready int) *clusterView {
		return &clusterView{ID: "east", Local: true, Network: "n1", Locality: here, Exports: exportsOf(ready, "10.96.0.10")}
	}
	sameNet := &clusterView{ID: "b-samenet", Network: "n1", Locality: Locality{Region: "us", Zone: "us-1"}, Gateway: gw("192.0.2.1"), Exports: exportsOf(2)}
	sameZone := &clusterView{ID: "c-zone", Network: "n2", Locality: here, Gateway: gw("192.0.2.2"), Exports: exportsOf(2)}
	sameRegion := &clusterView{ID: "d-region", Network: "n3", Locality: Locality{Region: "eu", Zone: "eu-2"}, Gateway: gw("192.0.2.3"), Exports: exportsOf(1)}
	sameRegion2 := &clusterView{ID: "e-region", Network: "n4", Locality: Locality{Region: "eu", Zone: "eu-3"}, Gateway: gw("192.0.2.4"), Exports: exportsOf(1)}
	far := &clusterView{ID: "f-far", Network: "n5", Locality: Locality{Region: "ap"}, Gateway: gw("192.0.2.5"), Exports: exportsOf(3)}
	withdrawn := func(c *clusterView) *clusterView {
		d := *c
		d.Withdrawn, d.Health = true, "gateway probe failed"
		return &d
	}
	noReady := func(c *clusterView) *clusterView { d := *c; d.Exports = exportsOf(0); return &d }
	for _, tc := range []struct {
		name     string
		clusters []*clusterView
		want     string
	}{
		{"local while it has ready endpoints", []*clusterView{local(1), sameNet, far}, "10.96.0.10"},
		{"same network next", []*clusterView{local(0), sameNet, sameZone, far}, "192.0.2.1"},
		{"same zone next", []*clusterView{local(0), withdrawn(sameNet), sameZone, far}, "192.0.2.2"},
		{"same region, every cluster of it", []*clusterView{local(0), noReady(sameNet), sameRegion, sameRegion2, far}, "192.0.2.3 192.0.2.4"},
		{"then anywhere", []*clusterView{local(0), withdrawn(sameRegion), far}, "192.0.2.5"},
		{"nothing left", []*clusterView{local(0), withdrawn(far)}, ""},
		{"a cluster without a gateway address cannot answer", []*clusterView{local(0), {ID: "g", Network: "n1", Exports: exportsOf(1)}, far}, "192.0.2.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs, cands := choose(tc.clusters, "shop/web")
			var got []string
			for _, a := range addrs {
				got = append(got, a.String())
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("answer %v, want %s", got, tc.want)
			}
			if len(cands) != len(tc.clusters) {
				t.Fatalf("%d candidates for %d clusters", len(cands), len(tc.clusters))
			}
			for _, c := range cands {
				if c.Why == "" || c.Tier == "" {
					t.Errorf("candidate %+v not explained", c)
				}
			}
		})
	}
}

func TestHealthHoldDown(t *testing.T) {
	var h health
	t0 := time.Unix(1000, 0)
	hold := 30 * time.Second
	if h.update(t0, "", hold) || h.withdrawn {
		t.Fatal("a healthy cluster was withdrawn")
	}
	if !h.update(t0.Add(time.Second), "gateway probe failed", hold) || !h.withdrawn {
		t.Fatal("a failing cluster was not withdrawn")
	}
	h.update(t0.Add(2*time.Second), "", hold) // healthy again: the hold-down starts
	if h.update(t0.Add(20*time.Second), "", hold) || !h.withdrawn {
		t.Fatal("returned before the hold-down")
	}
	h.update(t0.Add(25*time.Second), "gateway probe failed", hold) // a relapse restarts it
	h.update(t0.Add(26*time.Second), "", hold)
	if h.update(t0.Add(40*time.Second), "", hold) {
		t.Fatal("returned before a whole hold-down after the relapse")
	}
	if !h.update(t0.Add(56*time.Second), "", hold) || h.withdrawn {
		t.Fatal("not returned after the hold-down")
	}
}

func TestMeshNames(t *testing.T) {
	for name, want := range map[string]string{
		"reviews.default.global.":      "default/reviews  global",
		"Reviews.Default.West.Mesh":    "default/reviews west mesh",
		"reviews.global.":              "not",
		"a.b.c.d.global.":              "not",
		"reviews.default.svc.cluster.": "not",
	} {
		key, cluster, suffix, ok := meshNames(name, []string{"global", "mesh"})
		got := fmt.Sprintf("%s %s %s", key, cluster, suffix)
		if !ok {
			got = "not"
		}
		if got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
