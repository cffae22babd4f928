package table

import (
	"strings"
)

// Match is the outcome of a lookup: the host a question names, if any, and how it was reached.
type Match struct {
	n      *name
	ptrs   []string // hosts of a reverse (PTR) name
	zone   string   // SOA owner of a reverse name
	target string   // CNAME target, when the question carried one of the client's search domains
	ent    bool     // an empty non-terminal of the authoritative zone in zone; without it and any
	// name, a zone means the question is absent from that zone
}

// Found reports whether the question names something in the table. A found name is answered by
// meshdns, with data or NODATA, and never goes to the next plugin.
func (m Match) Found() bool { return m.n != nil || m.ptrs != nil || m.ent }

// NXDomain reports whether the question is absent from a zone the table is authoritative for (Zone):
// the answer is NXDOMAIN, never the next plugin's.
func (m Match) NXDomain() bool { return m.n == nil && m.ptrs == nil && !m.ent && m.zone != "" }

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
	return m.n.alias
}

// Zone returns the apex whose SOA goes in a negative answer about the matched name.
func (m Match) Zone() string {
	if m.n != nil {
		return m.n.zone
	}
	return m.zone
}

// Lookup finds the host that qname names for a client in view v. qname is matched case-insensitively;
// a hit allocates nothing.
func (t *Table) Lookup(qname string, v *View) Match {
	var buf [256]byte
	key := appendLower(buf[:0], qname)
	if n := t.find(key, v); n != nil {
		return Match{n: n}
	}
	if hosts, zone := t.ptr(key); hosts != nil {
		return Match{ptrs: hosts, zone: zone}
	}
	for _, s := range v.suffixes {
		cut := len(key) - len(s) + 1 // keeps the dot before the suffix
		if cut <= 1 || !hasSuffix(key, s) || escaped(key, cut-1) {
			continue
		}
		n := t.find(key[:cut], v)
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
func (n *name) seenBy(v *View) bool { return n.vis == nil || n.vis.sees(v.Namespace) }

// How a key reached a name: which of a variant's keys to check it against.
const (
	byName = iota // names: the host, an alt host, a short form
	byBare        // bare[namespace]: the bare short name
	byWild        // wild: the wildcard's base, which every variant of the wildcard claims
)

// variantFor returns the variant of the host whose first variant is n that answers key for a client
// in view v: the first that claims key and that v sees; nil when there is none.
func (n *name) variantFor(key []byte, by int, v *View) *name {
	if n.vis == nil {
		return n // every client sees n: Merge left no other variant, and n claims key
	}
	return n.laterVariant(key, by, v)
}

func (n *name) laterVariant(key []byte, by int, v *View) *name {
	for {
		if n.seenBy(v) && n.claims(key, by) {
			return n
		}
		if n.chain == nil || n.chain.next == nil {
			return nil
		}
		n = n.chain.next
	}
}

// claims reports whether variant n claims key, reached by.
func (n *name) claims(key []byte, by int) bool {
	switch {
	case n.chain == nil || by == byWild:
		return true
	case by == byBare:
		return n.chain.bare == string(key)
	}
	if n.host == string(key) {
		return true
	}
	for _, k := range n.chain.keys {
		if k == string(key) {
			return true
		}
	}
	return false
}

// find looks key up as a host or one of its forms, then as a bare name in the client's namespace,
// then under the most specific wildcard, and returns the variant the client gets. A name the client
// may not see is absent for it: the search goes on to the next form.
func (t *Table) find(key []byte, v *View) *name {
	if t.over != nil {
		return t.findLayered(key, v)
	}
	if c, ok := t.names[string(key)]; ok {
		if n := c.n.variantFor(key, byName, v); n != nil {
			return n
		}
	}
	if v.Namespace != "" && isSingleLabel(key) {
		if c, ok := t.bare[v.Namespace][string(key)]; ok {
			if n := c.n.variantFor(key, byBare, v); n != nil {
				return n
			}
		}
	}
	if len(t.wild) == 0 {
		return nil
	}
	for i := 0; i < len(key)-1; i++ {
		if key[i] == '.' && !escaped(key, i) {
			if n, ok := t.wild[string(key[i+1:])]; ok {
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

func isSingleLabel(key []byte) bool {
	for i := 0; i < len(key)-1; i++ {
		if key[i] == '.' && !escaped(key, i) {
			return false
		}
	}
	return len(key) > 1
}
