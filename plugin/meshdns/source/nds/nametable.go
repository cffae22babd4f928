// Package nds is the name table source that follows a control plane over Istio's NDS: the NameTable
// resource of an ADS stream (gRPC xDS), state of the world or delta.
package nds

import (
	"fmt"
	"net/netip"

	"github.com/meshdns/meshdns/plugin/meshdns/pace"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/encoding/protowire"
)

// TypeURL is the xDS type of Istio's name table.
const TypeURL = "type.googleapis.com/istio.networking.nds.v1.NameTable"

// The wire format of istio.networking.nds.v1.NameTable (istio.io/istio pkg/dns/proto/nds.proto):
//
//	message NameTable {
//	  message NameInfo {
//	    repeated string ips = 1; string registry = 2; string shortname = 3;
//	    string namespace = 4; repeated string alt_hosts = 5;
//	  }
//	  map<string, NameInfo> table = 1;
//	}
//
// It is decoded here by hand, straight into table entries: importing istio.io/istio for five fields
// would pull its whole dependency graph (Envoy, Kubernetes, at versions that clash with CoreDNS's),
// and a direct decoder skips the intermediate message of a 100k-name push. The real istiod tests and
// the encoder round trip keep it honest.
const (
	fieldTable = 1

	fieldMapKey   = 1
	fieldMapValue = 2

	fieldIPs       = 1
	fieldRegistry  = 2
	fieldShortname = 3
	fieldNamespace = 4
	fieldAltHosts  = 5
)

// DecodeNameTable decodes a serialised NameTable into entries, checking every host and address.
// Errors name the host at fault.
func DecodeNameTable(b []byte) ([]table.Entry, error) {
	var entries []table.Entry
	seen := make(map[string]bool)
	d := decoder{interned: make(map[string]string)}
	var p pace.Pacer
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("NameTable: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num != fieldTable || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, fmt.Errorf("NameTable field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:] // an unknown field: newer control planes may add some
			continue
		}
		entry, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("NameTable entry %d: %v", len(entries)+1, protowire.ParseError(n))
		}
		p.Tick() // let queries in on a shared core
		b = b[n:]
		e, err := d.mapEntry(entry)
		if err != nil {
			return nil, err
		}
		if seen[e.Host] {
			return nil, fmt.Errorf("host %q: given twice", e.Host)
		}
		seen[e.Host] = true
		entries = append(entries, e)
	}
	return entries, nil
}

// decoder shares the strings that repeat across a table (registries, namespaces) rather than
// allocating them once per host.
type decoder struct {
	interned map[string]string
}

func (d *decoder) intern(b []byte) string {
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	d.interned[s] = s
	return s
}

func (d *decoder) mapEntry(b []byte) (table.Entry, error) {
	var (
		e    table.Entry
		info []byte
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, fmt.Errorf("NameTable entry: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldMapKey && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, fmt.Errorf("NameTable entry key: %v", protowire.ParseError(n))
			}
			e.Host, b = string(v), b[n:]
		case num == fieldMapValue && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, fmt.Errorf("NameTable entry value: %v", protowire.ParseError(n))
			}
			info, b = v, b[n:]
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return e, fmt.Errorf("NameTable entry field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if err := table.ValidateHost(e.Host); err != nil {
		return e, fmt.Errorf("host %q: %v", e.Host, err)
	}
	if err := d.nameInfo(info, &e); err != nil {
		return e, fmt.Errorf("host %q: %v", e.Host, err)
	}
	return e, nil
}

func (d *decoder) nameInfo(b []byte, e *table.Entry) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType || num < fieldIPs || num > fieldAltHosts {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		raw, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case fieldIPs:
			a, err := parseAddr(raw)
			if err != nil || a.Zone() != "" {
				return fmt.Errorf("ips[%d]: %q is not an IP address", len(e.Addrs), raw)
			}
			e.Addrs = append(e.Addrs, a.Unmap())
		case fieldRegistry:
			e.Registry = d.intern(raw)
		case fieldShortname:
			e.ShortName = string(raw)
		case fieldNamespace:
			e.Namespace = d.intern(raw)
		case fieldAltHosts:
			v := string(raw)
			if err := table.ValidateHost(v); err != nil {
				return fmt.Errorf("alt_hosts[%d]: %v", len(e.AltHosts), err)
			}
			e.AltHosts = append(e.AltHosts, v)
		}
	}
	return nil
}

// parseAddr parses an address without keeping its text: netip.Addr.UnmarshalText takes the bytes.
func parseAddr(raw []byte) (netip.Addr, error) {
	var a netip.Addr
	if len(raw) == 0 {
		return a, fmt.Errorf("empty address")
	}
	err := a.UnmarshalText(raw)
	return a, err
}

// EncodeNameTable serialises entries as a NameTable, as istiod would send them.
func EncodeNameTable(entries []table.Entry) []byte {
	var b []byte
	for _, e := range entries {
		var info []byte
		for _, a := range e.Addrs {
			info = protowire.AppendTag(info, fieldIPs, protowire.BytesType)
			info = protowire.AppendString(info, a.String())
		}
		for _, f := range []struct {
			num protowire.Number
			v   string
		}{{fieldRegistry, e.Registry}, {fieldShortname, e.ShortName}, {fieldNamespace, e.Namespace}} {
			if f.v != "" {
				info = protowire.AppendTag(info, f.num, protowire.BytesType)
				info = protowire.AppendString(info, f.v)
			}
		}
		for _, h := range e.AltHosts {
			info = protowire.AppendTag(info, fieldAltHosts, protowire.BytesType)
			info = protowire.AppendString(info, h)
		}
		var entry []byte
		entry = protowire.AppendTag(entry, fieldMapKey, protowire.BytesType)
		entry = protowire.AppendString(entry, e.Host)
		entry = protowire.AppendTag(entry, fieldMapValue, protowire.BytesType)
		entry = protowire.AppendBytes(entry, info)
		b = protowire.AppendTag(b, fieldTable, protowire.BytesType)
		b = protowire.AppendBytes(b, entry)
	}
	return b
}
