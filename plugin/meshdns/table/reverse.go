package table

import (
	"net/netip"
	"strings"

	"github.com/coredns/coredns/plugin/pkg/dnsutil"
)

const (
	reverseV4 = "in-addr.arpa."
	reverseV6 = "ip6.arpa."
)

// ptr returns the hosts that own the address a reverse name spells, and the reverse zone. Only the
// names every client sees have PTRs (a host's variant every client sees included): a reverse name
// carries no view, and a PTR would show a limited name, and its address, to every client.
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
		base, ok := t.unpruned[addr]
		if !ok {
			base = t.reverse[addr]
		}
		if hosts := t.reverseHosts(base, t.over.reverse[addr]); len(hosts) > 0 {
			return hosts, zone
		}
		return nil, ""
	}
	return t.reverse[addr], zone
}

// pruneAncestors drops from sorted hosts those with a subdomain among them: an address that names a
// headless service and one of its endpoints (db.ns.svc... and db-0.db.ns.svc...) points back at the
// endpoint's own name, as the Kubernetes and MCS DNS specifications give one PTR per endpoint.
func pruneAncestors(hosts []string) []string {
	out := hosts[:0:0]
	for _, h := range hosts {
		ancestor := false
		for _, o := range hosts {
			if len(o) > len(h) && strings.HasSuffix(o, h) && o[len(o)-len(h)-1] == '.' {
				ancestor = true
				break
			}
		}
		if !ancestor {
			out = append(out, h)
		}
	}
	return out
}
