package table

import (
	"net/netip"
	"slices"
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
func (t *Table) ptr(key []byte) (hosts []string, one *name, zone string) {
	switch {
	case hasSuffix(key, "."+reverseV4):
		zone = reverseV4
	case hasSuffix(key, "."+reverseV6):
		zone = reverseV6
	default:
		return nil, nil, ""
	}
	addr, err := netip.ParseAddr(dnsutil.ExtractAddressFromReverse(string(key)))
	if err != nil {
		return nil, nil, ""
	}
	if t.over != nil {
		base, ok := t.unpruned[addr]
		if !ok {
			base = t.reverseOf(addr)
		}
		if hosts := t.reverseHosts(base, t.over.reverseOf(addr)); len(hosts) > 0 {
			return hosts, nil, zone
		}
		return nil, nil, ""
	}
	ref, ok := t.reverseRef(addr)
	switch {
	case !ok:
		return nil, nil, ""
	case ref >= 0:
		return nil, &t.all[ref], zone
	}
	return t.revLists[^ref], nil, zone
}

// reverseRef is the reference rev4 or rev6 holds for addr.
func (t *Table) reverseRef(addr netip.Addr) (int32, bool) {
	if addr.Is4() {
		ref, ok := t.rev4[addr.As4()]
		return ref, ok
	}
	ref, ok := t.rev6[addr.As16()]
	return ref, ok
}

// reverseOf returns the hosts whose PTR addr is, sorted; nil when none.
func (t *Table) reverseOf(addr netip.Addr) []string {
	ref, ok := t.reverseRef(addr)
	switch {
	case !ok:
		return nil
	case ref >= 0:
		return []string{t.all[ref].host}
	}
	return t.revLists[^ref]
}

// addReverse records that addr (unmapped) is an address of t.all[i].
func (t *Table) addReverse(addr netip.Addr, i int32) {
	if addr.Is4() {
		ref, ok := t.rev4[addr.As4()]
		t.rev4[addr.As4()] = t.joinReverse(ref, ok, i)
		return
	}
	ref, ok := t.rev6[addr.As16()]
	t.rev6[addr.As16()] = t.joinReverse(ref, ok, i)
}

// joinReverse returns the reference that adds host t.all[i] to old (none unless ok).
func (t *Table) joinReverse(old int32, ok bool, i int32) int32 {
	host := t.all[i].host
	switch {
	case !ok:
		return i
	case old >= 0 && t.all[old].host == host:
		return old // another address of the same host, or another variant of it
	case old >= 0:
		t.revLists = append(t.revLists, []string{t.all[old].host, host})
		return ^int32(len(t.revLists) - 1)
	}
	if !slices.Contains(t.revLists[^old], host) {
		t.revLists[^old] = append(t.revLists[^old], host)
	}
	return old
}

// finishReverse sorts the lists of addresses several hosts share and prunes them (pruneAncestors),
// keeping the whole lists for overlays (unpruned).
func (t *Table) finishReverse() {
	var whole map[int32][]string // the lists pruning shortened, by their place in revLists
	for i, hosts := range t.revLists {
		slices.Sort(hosts)
		if p := pruneAncestors(hosts); len(p) < len(hosts) {
			if whole == nil {
				whole = map[int32][]string{}
			}
			whole[int32(i)], t.revLists[i] = hosts, p
		}
	}
	if whole == nil {
		return
	}
	t.unpruned = make(map[netip.Addr][]string)
	for k, ref := range t.rev4 {
		if hosts, ok := whole[^ref]; ref < 0 && ok {
			t.unpruned[netip.AddrFrom4(k)] = hosts
		}
	}
	for k, ref := range t.rev6 {
		if hosts, ok := whole[^ref]; ref < 0 && ok {
			t.unpruned[netip.AddrFrom16(k)] = hosts
		}
	}
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
