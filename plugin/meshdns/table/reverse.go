package table

import (
	"net/netip"

	"github.com/coredns/coredns/plugin/pkg/dnsutil"
)

const (
	reverseV4 = "in-addr.arpa."
	reverseV6 = "ip6.arpa."
)

// ptr returns the hosts that own the address a reverse name spells, and the reverse zone.
func (t *Table) ptr(key []byte) ([]string, string) {
	var zone string
	switch {
	case hasSuffix(key, "."+reverseV4):
		zone = reverseV4
	case hasSuffix(key, "."+reverseV6):
		zone = reverseV6
	default:
		return nil, ""
	}
	addr, err := netip.ParseAddr(dnsutil.ExtractAddressFromReverse(string(key)))
	if err != nil {
		return nil, ""
	}
	if t.over != nil {
		if hosts := t.reverseHosts(t.reverse[addr], t.over.reverse[addr]); len(hosts) > 0 {
			return hosts, zone
		}
		return nil, ""
	}
	return t.reverse[addr], zone
}
