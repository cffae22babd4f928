package table

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/coredns/coredns/plugin/pkg/dnsutil"

	"github.com/meshdns/meshdns/plugin/meshdns/pace"
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
		if hosts := t.reverseHosts(t.unprunedReverse(addr), t.over.reverseOf(addr)); len(hosts) > 0 {
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

// joinReverse returns the reference that adds host t.all[i] to old (none unless ok). Two hosts one
// of which is a subdomain of the other are pruned at once (pruneAncestors): a headless service and
// each of its endpoints share every address, and a list for each would cost more than its names.
func (t *Table) joinReverse(old int32, ok bool, i int32) int32 {
	host := t.all[i].host
	switch {
	case !ok:
		return i
	case old >= 0 && t.all[old].host == host:
		return old // another address of the same host, or another variant of it
	case old >= 0 && isSubdomain(host, t.all[old].host):
		return i
	case old >= 0 && isSubdomain(t.all[old].host, host):
		return old
	case old >= 0:
		t.revLists = append(t.revLists, []string{t.all[old].host, host})
		return ^int32(len(t.revLists) - 1)
	}
	if !slices.Contains(t.revLists[^old], host) {
		t.revLists[^old] = append(t.revLists[^old], host)
	}
	return old
}

// finishReverse sorts the lists of addresses several hosts share and prunes them (pruneAncestors).
func (t *Table) finishReverse() {
	var p pace.Pacer
	for i, hosts := range t.revLists {
		p.Tick()
		slices.Sort(hosts)
		t.revLists[i] = pruneAncestors(hosts)
	}
}

// unprunedReverse is every host of the table with the address addr that a PTR may name, before
// pruning: the hosts it keeps, and their ancestors with addr that pruning dropped. An overlay needs
// them: when it changes the subdomain that pruned a host, the host is back. Pruned hosts are found
// again rather than kept, a list for every address of every headless service otherwise.
func (t *Table) unprunedReverse(addr netip.Addr) []string {
	kept := t.reverseOf(addr)
	out := kept
	for _, h := range kept {
		for anc := parentOf(h); anc != ""; anc = parentOf(anc) {
			if c, ok := t.names[anc]; ok && c.strength == 0 && c.n.host == anc && c.n.reversedAt(addr) {
				if len(out) == len(kept) {
					out = slices.Clone(kept) // kept may be the table's own list
				}
				out = append(out, anc)
			}
		}
	}
	return out
}

// reversedAt reports whether a PTR of addr may name n's host: a variant every client sees has it.
func (n *name) reversedAt(addr netip.Addr) bool {
	for v := n; v != nil; v = v.nextVariant() {
		if v.seenByAll() && v.hasAddr(addr) {
			return true
		}
	}
	return false
}

// hasAddr reports whether addr is among n's prepacked records.
func (n *name) hasAddr(addr netip.Addr) bool {
	recs, size := n.a(), wireA
	if addr.Is6() {
		recs, size = n.aaaa(), wireAAAA
	}
	want := addr.AsSlice()
	for ; len(recs) >= size; recs = recs[size:] {
		if string(ip(recs, size)) == string(want) {
			return true
		}
	}
	return false
}

// parentOf is the name above canonical host h, "" above a top-level one.
func parentOf(h string) string {
	i := strings.IndexByte(h, '.')
	if i < 0 || i == len(h)-1 {
		return ""
	}
	return h[i+1:]
}

// isSubdomain reports whether canonical host sub is a proper subdomain of canonical host of.
func isSubdomain(sub, of string) bool {
	return len(sub) > len(of) && strings.HasSuffix(sub, of) && sub[len(sub)-len(of)-1] == '.'
}

// pruneAncestors drops from sorted hosts those with a subdomain among them: an address that names a
// headless service and one of its endpoints (db.ns.svc... and db-0.db.ns.svc...) points back at the
// endpoint's own name, as the Kubernetes and MCS DNS specifications give one PTR per endpoint.
func pruneAncestors(hosts []string) []string {
	out := hosts[:0:0]
	for _, h := range hosts {
		ancestor := false
		for _, o := range hosts {
			if isSubdomain(o, h) {
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
