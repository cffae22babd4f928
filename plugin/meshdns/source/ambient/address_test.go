package ambient

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestDecodeRoundTrip(t *testing.T) {
	svc := &Service{Name: "reviews", Namespace: "default", Hostname: "reviews.default.svc.cluster.local",
		Addresses: []NetworkAddress{{Network: "net1", Addr: netip.MustParseAddr("10.96.0.1")}, {Addr: netip.MustParseAddr("fd00::1")},
			{Network: "net1", Addr: netip.MustParseAddr("10.0.0.0"), CIDR: true}},
		IPFamilies: 3, Canonical: true, NamespaceOnly: true}
	w, s, err := DecodeAddress(EncodeService(svc))
	if err != nil || w != nil || !reflect.DeepEqual(s, svc) {
		t.Errorf("service: got %+v, %v, %v", s, w, err)
	}
	wl := &Workload{UID: "Kubernetes//Pod/default/db-0", Name: "db-0", Namespace: "default", Network: "net1", Node: "node-1",
		ClusterID: "Kubernetes", Addrs: addrs("10.244.0.1", "fd00:244::1"), Services: []string{"default/db.default.svc.cluster.local", "default/x.default.svc.cluster.local"},
		Healthy: false, HostNetwork: true, Pod: true}
	w, s, err = DecodeAddress(EncodeWorkload(wl))
	if err != nil || s != nil || !reflect.DeepEqual(w, wl) {
		t.Errorf("workload: got %+v, %v, %v", w, s, err)
	}
}

// TestDecodesUnknownFields: fields this decoder does not know (ports, waypoints, future ones) are
// skipped, whatever their wire type; a v4-mapped address is an IPv4 one.
func TestDecodesUnknownFields(t *testing.T) {
	var m []byte
	m = appendString(m, fieldWorkloadName, "p")
	m = protowire.AppendTag(m, fieldWorkloadAddresses, protowire.BytesType)
	m = protowire.AppendBytes(m, netip.MustParseAddr("::ffff:10.1.2.3").AsSlice())
	m = protowire.AppendTag(m, 8, protowire.BytesType) // waypoint
	m = protowire.AppendBytes(m, []byte{0x12, 0x00})
	m = protowire.AppendTag(m, 99, protowire.Fixed64Type)
	m = protowire.AppendFixed64(m, 7)
	m = protowire.AppendTag(m, 98, protowire.Fixed32Type)
	m = protowire.AppendFixed32(m, 7)
	b := appendMessage(nil, fieldAddressWorkload, m)
	b = protowire.AppendTag(b, 50, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	w, _, err := DecodeAddress(b)
	if err != nil || w.Name != "p" || len(w.Addrs) != 1 || w.Addrs[0] != netip.MustParseAddr("10.1.2.3") || !w.Healthy {
		t.Errorf("got %+v, %v", w, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "neither a Workload nor a Service"},
		{"truncated", []byte{0x0a, 0x05, 0x01}, "Address field 1"},
		{"both", append(EncodeService(&Service{Hostname: "a.example"}), EncodeWorkload(&Workload{Name: "w"})...), "more than one"},
		{"no hostname", EncodeService(&Service{Name: "x", Namespace: "ns"}), `service "ns/": hostname empty host name`},
		{"bad hostname", EncodeService(&Service{Namespace: "ns", Hostname: "a..b"}), `service "ns/a..b": hostname`},
		{"short address", appendMessage(nil, fieldAddressWorkload, appendMessage(appendString(nil, fieldWorkloadName, "w"), fieldWorkloadAddresses, []byte{1, 2, 3})),
			`workload "/w": address of 3 bytes`},
		{"bad vip", appendMessage(nil, fieldAddressService, appendMessage(appendString(nil, fieldServiceHostname, "a.example"), fieldServiceAddresses,
			appendMessage(nil, fieldNetAddrAddress, []byte{1}))), "address of 1 bytes"},
		{"bad services key", EncodeWorkload(&Workload{Namespace: "ns", Name: "w", Healthy: true, Services: []string{"nohost"}}), `"nohost" is not namespace/hostname`},
	}
	for _, tc := range tests {
		_, _, err := DecodeAddress(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeAddress: arbitrary bytes decode to one valid Workload or Service, or fail cleanly; what
// decodes makes entries the table takes.
func FuzzDecodeAddress(f *testing.F) {
	f.Add(EncodeService(&Service{Name: "a", Namespace: "ns", Hostname: "a.ns.svc.cluster.local", Addresses: vips("", "10.0.0.1", "fd00::1")}))
	f.Add(EncodeService(&Service{Name: "h", Namespace: "ns", Hostname: "h.ns.svc.cluster.local"}))
	f.Add(EncodeService(&Service{Namespace: "ns", Hostname: "*.wild.example", Addresses: vips("n", "240.240.0.1")}))
	f.Add(EncodeWorkload(&Workload{UID: "u", Name: "h-0", Namespace: "ns", Addrs: addrs("10.1.0.1"), Services: []string{"ns/h.ns.svc.cluster.local"}, Healthy: true, Pod: true}))
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		w, s, err := DecodeAddress(data)
		if err != nil {
			if w != nil || s != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		if (w == nil) == (s == nil) {
			t.Fatalf("want exactly one of workload %v, service %v", w, s)
		}
		x := newIndex("cluster.local", "")
		tc := newTouched()
		x.put("r", w, s, tc)
		if s != nil {
			if err := table.ValidateHost(s.Hostname); err != nil {
				t.Fatalf("service with hostname %q: %v", s.Hostname, err)
			}
		}
		table.Build(x.all(), table.Options{ClusterDomain: "cluster.local", TTL: 30})
		x.remove("r", tc)
		if len(x.all()) != 0 || len(x.byAddr) != 0 || len(x.members) != 0 || len(x.byHost) != 0 {
			t.Fatalf("removing the only resource left %+v", x)
		}
	})
}
