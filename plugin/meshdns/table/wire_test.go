package table

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// AppendSOA writes the very record SOA builds, as dns.PackRR packs it, without allocating; a zone
// whose names do not pack plainly is left to the dns.Msg path.
func TestAppendSOA(t *testing.T) {
	tb := Build(nil, Options{ClusterDomain: "cluster.local", TTL: 5})
	long := strings.Repeat("a.", 121) // 242 bytes: hostmaster. makes a name of the longest wire form
	for _, zone := range []string{".", "cluster.local.", "svc.cluster.local.", "example.com.", long} {
		got, ok := tb.AppendSOA([]byte{1, 2}, zone)
		want := tb.packSOA(zone)
		if !ok || want == nil || !bytes.Equal(got[2:], want) || got[0] != 1 || got[1] != 2 {
			t.Errorf("%s: %v %x, want %x", zone, ok, got, want)
		}
		if allocs := testing.AllocsPerRun(100, func() { tb.AppendSOA(got[:0], zone) }); allocs != 0 {
			t.Errorf("%s: %.0f allocations", zone, allocs)
		}
	}
	for _, zone := range []string{`a\.b.example.`, "a..example.", "example.com", long + "b."} {
		if got, ok := tb.AppendSOA([]byte{1}, zone); ok || len(got) != 1 {
			t.Errorf("%q: written (%x)", zone, got)
		}
	}
}

// NODATA carries the SOA asked for: the host's prepacked one when it is the host's own zone's.
func TestAppendNoDataTakesTheZoneAsked(t *testing.T) {
	tb := Build([]Entry{{Host: "web.shop.svc.cluster.local", Addrs: addrs("10.0.0.1")}}, Options{ClusterDomain: "cluster.local", TTL: 30})
	m := tb.Lookup("web.shop.svc.cluster.local.", NewView("", nil, "cluster.local"))
	for _, zone := range []string{"cluster.local.", "svc.cluster.local.", "."} {
		got, ok := tb.AppendNoData(nil, m, dns.TypeAAAA, zone)
		if want, _ := tb.AppendSOA(nil, zone); !ok || !bytes.Equal(got, want) {
			t.Errorf("%s: %v %x, want %x", zone, ok, got, want)
		}
	}
	if _, ok := tb.AppendNoData(nil, m, dns.TypeA, "cluster.local."); ok {
		t.Error("NODATA for a type the host has")
	}
}
