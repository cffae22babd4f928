package table

import (
	"slices"
	"strings"
)

// Match is the outcome of a lookup: the host a question names, if any, and how it was reached.
type Match struct {
	n      *name
	ptrs   []string // hosts of a reverse (PTR) name
	ptr    *name    // or its one host
	zone   string   // SOA owner of a reverse name
	target string   // CNAME target, when the question carried one of the client's search domains
	ent    bool     // an empty non-terminal of the authoritative zone in zone; without it and any
	// name, a zone means the question is absent from that zone
}

// Found reports whether the question names something in the table. A found name is answered by
// meshdns, with data or NODATA, and never goes to the next plugin.
func (m Match) Found() bool { return m.n != nil || m.isReverse() || m.ent }

// isReverse reports whether the match is a reverse name with PTRs.
func (m Match) isReverse() bool { return m.ptrs != nil || m.ptr != nil }

// NXDomain reports whether the question is absent from a zone the table is authoritative for (Zone):
// the answer is NXDOMAIN, never the next plugin's.
func (m Match) NXDomain() bool { return m.n == nil && !m.isReverse() && !m.ent && m.zone != "" }

// Host returns the canonical host matched ("*.example.com." for a wildcard), or "" for a reverse name.
func (m Match) Host() string {
	if m.n == nil {
		return ""
	}
	return m.n.host
}

// Alias returns the target of the CNAME that answers the matched name, or "" when it has its own
// addresses. The target is not in the reply Answer builds: the caller resolves it.
func (m Match) Alias() string {
	if m.n == nil {
		return ""
	}
	return m.n.extra().alias
}

// Zone returns the apex whose SOA goes in a negative answer about the matched name.
func (m Match) Zone() string {
	if m.n != nil {
		return m.n.zone.name
	}
	return m.zone
}

// Lookup finds the host that qname names for a client in view v. qname is matched case-insensitively;
// a hit allocates nothing.
func (t *Table) Lookup(qname string, v *View) Match {
	var buf [512]byte
	key, scratch := appendLower(buf[:0:256], qname), buf[256:256]
	if n := t.find(key, nil, scratch, v); n != nil {
		return Match{n: n}
	}
	if hosts, one, zone := t.ptr(key); hosts != nil || one != nil {
		return Match{ptrs: hosts, ptr: one, zone: zone}
	}
	for _, s := range v.suffixes {
		cut := len(key) - len(s) + 1 // keeps the dot before the suffix
		if cut <= 1 || !hasSuffix(key, s) || escaped(key, cut-1) {
			continue
		}
		n := t.find(key[:cut], key, scratch, v) // a cluster domain suffix makes short forms of key itself
		if n == nil {
			continue
		}
		target := n.host
		if strings.HasPrefix(target, "*.") {
			target = qname[:cut] // a wildcard's answers are owned by the name it matched
		}
		return Match{n: n, target: target}
	}
	if zone := t.authority(key); zone != "" {
		return Match{zone: zone, ent: t.isENT(key)}
	}
	return Match{}
}

// authority returns the authoritative zone that holds key, or "". No allocation: a map lookup with a
// converted byte slice does not copy it, and the zone returned is the map's own string.
func (t *Table) authority(key []byte) string {
	overZones := t.over != nil && len(t.over.zones) > 0
	if len(t.zones) == 0 && !overZones {
		return ""
	}
	for i := 0; i < len(key)-1; i++ {
		if i == 0 || key[i-1] == '.' && !escaped(key, i-1) {
			if z, ok := t.zones[string(key[i:])]; ok {
				return z
			}
			if overZones {
				if z, ok := t.over.zones[string(key[i:])]; ok {
					return z
				}
			}
		}
	}
	return ""
}

// isENT reports whether key is a proper ancestor of hosts in an authoritative zone.
func (t *Table) isENT(key []byte) bool {
	n := t.ents[string(key)]
	if t.over != nil {
		n += t.entDelta[string(key)]
	}
	return n > 0
}

// seenBy reports whether a client in view v may see n: a name limited to some namespaces is absent
// for the clients of the others.
func (n *name) seenBy(v *View) bool {
	return n.seenByAll() || n.more.vis.sees(v.Namespace)
}

// seenByAll reports whether every client sees n: only such a name has PTRs.
func (n *name) seenByAll() bool { return n.more == nil || n.more.vis == nil }

// How a key reached a name: which of a variant's keys to check it against.
const (
	byName  = iota // names: the host or an alt host
	byShort        // names, under the host a Kubernetes short form or bare name spells out (findShort)
	byWild         // wild: the wildcard's base, which every variant of the wildcard claims
)

// variantFor returns the variant of the host whose first variant is n that answers key for a client
// in view v: the first that claims key and that v sees; nil when there is none.
func (n *name) variantFor(key []byte, by int, v *View) *name {
	if n.seenByAll() {
		// Every client sees n: Merge left no other variant.
		if by == byShort && !n.short {
			return nil
		}
		return n
	}
	return n.laterVariant(key, by, v)
}

func (n *name) laterVariant(key []byte, by int, v *View) *name {
	for ; n != nil; n = n.nextVariant() {
		if n.seenBy(v) && n.claims(key, by) {
			return n
		}
	}
	return nil
}

// nextVariant is the variant of n's host chained after n, nil after the last.
func (n *name) nextVariant() *name {
	if chain := n.extra().chain; chain != nil {
		return chain.next
	}
	return nil
}

// claims reports whether variant n claims key, reached by.
func (n *name) claims(key []byte, by int) bool {
	switch {
	case by == byShort:
		return n.short
	case by == byWild || n.host == string(key):
		return true
	}
	chain := n.extra().chain
	return chain == nil || slices.Contains(chain.alts, string(key))
}

// find looks key up as a host or an alt host, then as a Kubernetes short form, then under the most
// specific wildcard, and returns the variant the client gets. A name the client may not see is absent
// for it: the search goes on to the next form. tried is a key that find missed before, or nil;
// scratch has room for a host.
func (t *Table) find(key, tried, scratch []byte, v *View) *name {
	var c claim
	var ok bool
	if t.over == nil {
		c, ok = t.names[string(key)] // claimOf, inline for the common table
	} else {
		c, ok = t.claimOf(key)
	}
	if ok {
		if c.n.more == nil {
			return c.n // the common name: every client sees it, and it has no other variant
		}
		if n := c.n.variantFor(key, byName, v); n != nil {
			return n
		}
	}
	if n := t.findShort(key, tried, scratch, v); n != nil {
		return n
	}
	return t.findWild(key, v)
}

// findShort looks key up as a short form of a Kubernetes host name.ns.svc.DOMAIN: "name.ns.svc.",
// "name.ns.", or the bare "name." of a client in namespace ns. Each spells its host out, so the
// index holds the hosts alone. Where two hosts answer one key (namespace "svc": "a.b.svc." is
// a.b.svc.DOMAIN's and a.b.svc.svc.DOMAIN's), the lesser host wins, as claims of one strength do.
// A host equal to tried, which was looked up already, is not looked up again. The host is spelled
// out in scratch.
func (t *Table) findShort(key, tried, scratch []byte, v *View) *name {
	if len(key) < 2 || len(key)+len(t.cd)+4 > 255 || t.shortForms.labels == 0 && t.over == nil {
		return nil // too long for a host, or no host has short forms
	}
	labels, last, prev := 1, -1, -1 // last and prev: the dots before the last two labels
	for i := 0; i < len(key)-1; i++ {
		switch key[i] {
		case '\\':
			return nil // escaped, which no host is
		case '.':
			labels++
			prev, last = last, i
		}
	}
	if labels == 1 {
		if v.Namespace == "" || !t.mayBeShort(1, []byte(v.Namespace)) {
			return nil
		}
		return t.shortOf(scratch, tried, v, key, v.Namespace, ".svc", t.cd)
	}
	bare := key[:len(key)-1] // without the final dot
	var found *name
	if labels >= 3 && string(key[last+1:len(key)-1]) == "svc" && t.mayBeShort(labels-2, key[prev+1:last]) {
		found = t.shortOf(scratch, tried, v, bare, t.cd)
	}
	if t.mayBeShort(labels-1, key[last+1:len(key)-1]) {
		if n := t.shortOf(scratch, tried, v, bare, ".svc", t.cd); n != nil && (found == nil || n.host < found.host) {
			found = n
		}
	}
	return found
}

// mayBeShort reports whether a host of namespace ns may have a short name of labels labels.
func (t *Table) mayBeShort(labels int, ns []byte) bool {
	return t.shortForms.may(labels, ns) || t.over != nil && t.over.shortForms.may(labels, ns)
}

// shortOf is the variant of the host spelled by key and then the rest that answers its short forms
// for a client in view v, or nil; nil too for tried, which missed already. The host is spelled in
// scratch.
func (t *Table) shortOf(scratch, tried []byte, v *View, key []byte, rest ...string) *name {
	host := append(scratch[:0], key...)
	for _, r := range rest {
		host = append(host, r...)
	}
	if string(host) == string(tried) {
		return nil
	}
	c, ok := t.claimOf(host)
	if !ok || c.strength != 0 {
		return nil // no such host: another's alt host does not give short forms
	}
	return c.n.variantFor(host, byShort, v)
}

// findWild looks key up under the most specific wildcard.
func (t *Table) findWild(key []byte, v *View) *name {
	if len(t.wild) == 0 && (t.over == nil || len(t.over.wild) == 0) {
		return nil
	}
	for i := 0; i < len(key)-1; i++ {
		if key[i] == '.' && !escaped(key, i) {
			if n := t.wildOf(key[i+1:]); n != nil {
				if n := n.variantFor(nil, byWild, v); n != nil {
					return n
				}
			}
		}
	}
	return nil
}

// appendLower appends name lower-cased (ASCII only, as DNS compares) and fully qualified to dst.
func appendLower(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	if len(dst) == 0 || dst[len(dst)-1] != '.' || escaped(dst, len(dst)-1) {
		dst = append(dst, '.')
	}
	return dst
}

// escaped reports whether the byte at i is escaped by an odd run of backslashes before it.
func escaped(name []byte, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && name[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// hasSuffix is strings.HasSuffix for a byte key, without converting (and allocating) the key.
func hasSuffix(key []byte, s string) bool {
	return len(key) >= len(s) && string(key[len(key)-len(s):]) == s
}
