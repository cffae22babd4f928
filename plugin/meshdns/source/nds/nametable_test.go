package nds

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestNameTableRoundTrip(t *testing.T) {
	in := []table.Entry{
		reviews,
		ratings,
		{Host: "*.wild.example", Addrs: []netip.Addr{netip.MustParseAddr("240.240.0.9")}, Registry: "External", AltHosts: []string{"wild.global"}},
		{Host: "empty.example"},
	}
	out, err := DecodeNameTable(EncodeNameTable(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n in %+v\nout %+v", in, out)
	}
}

// TestDecodesIstioBytes decodes bytes laid out as protoc-generated Go code writes a NameTable
// (fields in number order, map entry key then value), including fields this decoder does not know.
func TestDecodesIstioBytes(t *testing.T) {
	var info []byte
	info = protowire.AppendTag(info, 1, protowire.BytesType)
	info = protowire.AppendString(info, "10.0.0.1")
	info = protowire.AppendTag(info, 1, protowire.BytesType)
	info = protowire.AppendString(info, "::ffff:10.0.0.2") // v4-mapped: answered as v4
	info = protowire.AppendTag(info, 2, protowire.BytesType)
	info = protowire.AppendString(info, "Kubernetes")
	info = protowire.AppendTag(info, 9, protowire.VarintType) // a future field
	info = protowire.AppendVarint(info, 7)
	var entry []byte
	entry = protowire.AppendTag(entry, 2, protowire.BytesType) // value before key: any order is valid
	entry = protowire.AppendBytes(entry, info)
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "a.ns.svc.cluster.local")
	var nt []byte
	nt = protowire.AppendTag(nt, 1, protowire.BytesType)
	nt = protowire.AppendBytes(nt, entry)
	nt = protowire.AppendTag(nt, 2, protowire.Fixed32Type) // another future field
	nt = protowire.AppendFixed32(nt, 1)

	got, err := DecodeNameTable(nt)
	if err != nil {
		t.Fatal(err)
	}
	want := []table.Entry{{Host: "a.ns.svc.cluster.local", Registry: "Kubernetes",
		Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	entry := func(host string, ips ...string) []byte {
		e := table.Entry{Host: host}
		b := EncodeNameTable([]table.Entry{e})
		if len(ips) == 0 {
			return b
		}
		// Encode the ips by hand: they are not valid netip.Addrs.
		var info []byte
		for _, ip := range ips {
			info = protowire.AppendTag(info, 1, protowire.BytesType)
			info = protowire.AppendString(info, ip)
		}
		var me []byte
		me = protowire.AppendTag(me, 1, protowire.BytesType)
		me = protowire.AppendString(me, host)
		me = protowire.AppendTag(me, 2, protowire.BytesType)
		me = protowire.AppendBytes(me, info)
		b = protowire.AppendTag(nil, 1, protowire.BytesType)
		return protowire.AppendBytes(b, me)
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"truncated":      {[]byte{0x0a, 0x10, 0x0a}, "NameTable entry 1: unexpected EOF"},
		"bad tag":        {[]byte{0xff}, "NameTable: unexpected EOF"},
		"bad host":       {entry("a..b"), `host "a..b": "a..b" has an empty label`},
		"no host":        {entry(""), `host "": empty host name`},
		"bad ip":         {entry("a.b", "10.0.0.1", "10.0.0.300"), `host "a.b": ips[1]: "10.0.0.300" is not an IP address`},
		"duplicate host": {append(entry("a.b"), entry("a.b")...), `host "a.b": given twice`},
	} {
		_, err := DecodeNameTable(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
}

// FuzzDecodeNameTable: arbitrary pushes decode to valid entries or fail cleanly, never panic.
func FuzzDecodeNameTable(f *testing.F) {
	f.Add(EncodeNameTable([]table.Entry{reviews, ratings}))
	f.Add(EncodeNameTable([]table.Entry{{Host: "*.x.example", AltHosts: []string{"y.example"}}}))
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0x61})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := DecodeNameTable(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if err := table.ValidateHost(e.Host); err != nil {
				t.Fatalf("decoded an invalid host %q", e.Host)
			}
		}
		again, err := DecodeNameTable(EncodeNameTable(entries))
		if err != nil || len(again) != len(entries) {
			t.Fatalf("re-encoding %v: %v, %v", entries, again, err)
		}
	})
}
