package multicluster

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
)

func TestVIPsStableAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vips.json")
	ranges := []netip.Prefix{netip.MustParsePrefix("240.240.0.0/30"), netip.MustParsePrefix("2001:2::/126")} // 2 usable each
	v, err := newVIPAllocator(ranges, path)
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.sync([]string{"a/x", "b/y"})
	if err != nil {
		t.Fatal(err)
	}
	ax := fmt.Sprint(first["a/x"])
	if first["a/x"][0] == first["b/y"][0] || !ranges[0].Contains(first["a/x"][0]) || !ranges[1].Contains(first["a/x"][1]) {
		t.Fatalf("allocation %v", first)
	}
	for _, a := range append(first["a/x"], first["b/y"]...) {
		if a == ranges[0].Addr() || a == netip.MustParseAddr("240.240.0.3") {
			t.Fatalf("network or broadcast address %v handed out", a)
		}
	}
	if _, err := v.sync([]string{"a/x", "b/y", "c/z"}); err == nil {
		t.Fatal("a full range did not say so")
	}
	// A restart: the same addresses, whatever order the services come in.
	v2, err := newVIPAllocator(ranges, path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v2.sync([]string{"b/y", "a/x"})
	if err != nil || fmt.Sprint(again["a/x"]) != ax {
		t.Fatalf("after a restart a/x has %v (%v), had %s", again["a/x"], err, ax)
	}
	// A service gone frees its address for another.
	if got, err := v2.sync([]string{"a/x", "c/z"}); err != nil || got["c/z"] == nil || fmt.Sprint(got["a/x"]) != ax {
		t.Fatalf("%v %v", got, err)
	}
}
