package kubernetes

import (
	"slices"
	"testing"
)

func TestHostIndex(t *testing.T) {
	const (
		svc  = "db.data.svc.cluster.local."
		pod0 = "db-0.db.data.svc.cluster.local."
		pod1 = "db-1.db.data.svc.cluster.local."
		deep = "x.db-0.db.data.svc.cluster.local." // two labels under the Service: filed itself
	)
	var x hostIndex
	x.set("s/data/db", orderHosts([]string{svc, pod1, pod0, pod1, deep}))
	// A ServiceEntry naming one of the per-pod hosts, and one whose hosts lie under its second host.
	x.set("e/data/pin", orderHosts([]string{"pin.example.", pod0}))
	x.set("e/data/two", orderHosts([]string{"a.example.", "b.example.", "c.b.example."}))

	keys := func(h string) []string { return slices.Collect(x.keys(h)) }
	for h, want := range map[string][]string{
		svc:                       {"s/data/db"},
		pod0:                      {"e/data/pin", "s/data/db"},
		pod1:                      {"s/data/db"},
		deep:                      {"s/data/db"},
		"pin.example.":            {"e/data/pin"},
		"b.example.":              {"e/data/two"},
		"c.b.example.":            {"e/data/two"},
		"none.example.":           nil,
		"db-2." + svc:             nil, // under the Service's host, not among its names
		"data.svc.cluster.local.": nil,
	} {
		if got := keys(h); !slices.Equal(got, want) {
			t.Errorf("keys(%s) = %q, want %q", h, got, want)
		}
	}
	want := []string{"a.example.", "b.example.", "c.b.example.", pod0, pod1, svc, "pin.example.", deep}
	slices.Sort(want)
	if got := x.all(); !slices.Equal(got, want) {
		t.Errorf("all = %q,\nwant %q", got, want)
	}
	// Only the hosts not under their object's first host take a map entry of their own.
	if _, ok := x.named[pod1]; ok {
		t.Errorf("a per-pod host filed on its own: %q", x.named)
	}

	x.set("s/data/db", orderHosts([]string{svc, pod1}))
	if got := keys(pod0); !slices.Equal(got, []string{"e/data/pin"}) {
		t.Errorf("after the pod's name went: keys(%s) = %q", pod0, got)
	}
	for _, k := range []string{"s/data/db", "e/data/pin", "e/data/two"} {
		x.remove(k)
	}
	if len(x.hostsOf) != 0 || len(x.named) != 0 || len(x.all()) != 0 {
		t.Errorf("every object removed: named %q, hostsOf %q", x.named, x.hostsOf)
	}
}

func TestOrderHosts(t *testing.T) {
	got := orderHosts([]string{"b.", "c.", "b.", "a.", "c."})
	if !slices.Equal(got, []string{"b.", "a.", "c."}) {
		t.Errorf("orderHosts = %q", got)
	}
	if !under("x.a.b.", "a.b.") || under("y.x.a.b.", "a.b.") || under("a.b.", "a.b.") || under("xa.b.", "a.b.") {
		t.Error("under is wrong")
	}
	if parentHost("x.a.b.") != "a.b." || parentHost("b.") != "" {
		t.Error("parentHost is wrong")
	}
}
