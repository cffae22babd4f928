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
		got, ok := tb.AppendSOA([]byte{1, 2}, zone, 0)
		want := tb.packSOA(zone)
		if !ok || want == nil || !bytes.Equal(got[2:], want) || got[0] != 1 || got[1] != 2 {
			t.Errorf("%s: %v %x, want %x", zone, ok, got, want)
		}
		if allocs := testing.AllocsPerRun(100, func() { tb.AppendSOA(got[:0], zone, 0) }); allocs != 0 {
			t.Errorf("%s: %.0f allocations", zone, allocs)
		}
	}
	for _, zone := range []string{`a\.b.example.`, "a..example.", "example.com", long + "b."} {
		if got, ok := tb.AppendSOA([]byte{1}, zone, 0); ok || len(got) != 1 {
			t.Errorf("%q: written (%x)", zone, got)
		}
	}
}

// NODATA carries the SOA asked for: the host's prepacked one when it is the host's own zone's.
func TestAppendNoDataTakesTheZoneAsked(t *testing.T) {
	tb := Build([]Entry{{Host: "web.shop.svc.cluster.local", Addrs: addrs("10.0.0.1")}}, Options{ClusterDomain: "cluster.local", TTL: 30})
	m := tb.Lookup("web.shop.svc.cluster.local.", NewView("", nil, "cluster.local"))
	for _, zone := range []string{"cluster.local.", "svc.cluster.local.", "."} {
		got, ok := tb.AppendNoData(nil, m, dns.TypeAAAA, zone, 0)
		if want, _ := tb.AppendSOA(nil, zone, 0); !ok || !bytes.Equal(got, want) {
			t.Errorf("%s: %v %x, want %x", zone, ok, got, want)
		}
	}
	if _, ok := tb.AppendNoData(nil, m, dns.TypeA, "cluster.local.", 0); ok {
		t.Error("NODATA for a type the host has")
	}
}

// Compressed, the SOA's names point at the zone's name where the message has it, and the record
// unpacks as the same SOA.
func TestAppendSOACompressed(t *testing.T) {
	tb := Build(nil, Options{ClusterDomain: "cluster.local", TTL: 30})
	q := new(dns.Msg)
	q.SetQuestion("nope.svc.cluster.local.", dns.TypeA)
	msg, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	msg[9] = 1 // NSCOUNT
	at := 12 + len("\x04nope\x03svc")
	got, ok := tb.AppendSOA(msg, "cluster.local.", at)
	if !ok {
		t.Fatal("not written")
	}
	reply := new(dns.Msg)
	if err := reply.Unpack(got); err != nil || len(reply.Ns) != 1 {
		t.Fatalf("%v %v", err, reply)
	}
	if want := tb.SOA("cluster.local."); reply.Ns[0].String() != want.String() {
		t.Errorf("%v, want %v", reply.Ns[0], want)
	}
	if full, _ := tb.AppendSOA(nil, "cluster.local.", 0); len(got)-len(msg) != len(full)-3*(len("cluster.local.")+1-2) {
		t.Errorf("%d bytes compressed, %d in full", len(got)-len(msg), len(full))
	}
}
