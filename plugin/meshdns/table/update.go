package table

import (
	"slices"
	"strings"

	"github.com/meshdns/meshdns/plugin/meshdns/pace"
)

// Incremental updates. Rebuilding the whole table for one changed Service costs time in proportion
// to the table (about 100 ms for 50k names); Update costs time in proportion to the change. The table
// it returns keeps the indexes of the table it came from (the base) and adds a small overlay built
// from the changed hosts. A lookup takes the better of the base's claim on a key, unless that claim
// is a changed host's, and the overlay's. So that a changed host's keys find every other claimant,
// the overlay also holds the unchanged hosts that share a key with a changed one (its rivals, which
// Build records). The answers are those Build would give for the current entries; the caller builds
// afresh once the overlay grows (Pending).

// Update returns the table for the entries of t with changes applied: changes maps a host to all its
// current entries (already merged across sources: Merge, so possibly several variants), or to none
// when the host is gone.
func (t *Table) Update(changes map[string][]Entry) *Table {
	// Each loop goes over every host changed since the base, a tenth of the table at most: on a
	// shared core, queries come in between (pace).
	var p pace.Pacer
	current := make(map[string][]Entry, len(t.current)+len(changes))
	for h, es := range t.current {
		p.Tick()
		current[h] = es
	}
	for h, es := range changes {
		p.Tick()
		current[canonicalHost(h)] = es
	}
	n := 0
	for _, es := range current {
		n += len(es)
	}
	entries := make([]Entry, 0, n) // and the rivals, fewer
	present := 0
	for _, es := range current {
		p.Tick()
		if len(es) > 0 {
			entries = append(entries, es...)
			present++
		}
	}
	seen := make(map[string]bool)
	for h := range current {
		p.Tick()
		// A host's rivals come as runs of one host's variants: take each run whole, once.
		rs := t.rivals[h]
		for i := 0; i < len(rs); {
			rh := canonicalHost(rs[i].Host)
			j := i + 1
			for j < len(rs) && canonicalHost(rs[j].Host) == rh {
				j++
			}
			if _, changed := current[rh]; !changed && !seen[rh] {
				seen[rh] = true
				entries = append(entries, rs[i:j]...)
			}
			i = j
		}
	}
	pace.Check()
	out := *t
	out.over = build(entries, t.opt, t.zones)
	out.current = current
	out.serial = out.over.serial
	out.entries = t.baseLen
	for h := range current {
		p.Tick()
		if t.inBase(h) {
			out.entries--
		}
	}
	out.entries += present
	out.entDelta = t.entChanges(current)
	return &out
}

// entChanges is how the hosts added and removed since the base was built change its count of
// empty non-terminals.
func (t *Table) entChanges(current map[string][]Entry) map[string]int32 {
	if len(t.zones) == 0 {
		return nil
	}
	delta := make(map[string]int32)
	var p pace.Pacer
	for h, es := range current {
		p.Tick()
		was, now := t.inBase(h), len(es) > 0
		if was == now {
			continue
		}
		if z := t.zoneAbove(h); z != "" {
			d := int32(1)
			if was {
				d = -1
			}
			t.countAncestors(h, z, delta, d)
		}
	}
	return delta
}

// NeedsBuild reports whether changes add, change or remove an authoritative zone, which Update cannot
// fold in: the base's count of empty non-terminals would miss the hosts under a new zone.
func (t *Table) NeedsBuild(changes map[string][]Entry) bool {
	var p pace.Pacer
	for h, es := range changes {
		p.Tick()
		if slices.ContainsFunc(es, func(e Entry) bool { return e.Authoritative }) {
			return true
		}
		if _, ok := t.zones[canonicalHost(h)]; ok {
			return true
		}
	}
	return false
}

// Pending is the number of hosts changed since the table was last built whole.
func (t *Table) Pending() int { return len(t.current) }

// inBase reports whether canonical host h is one of the base's own hosts.
func (t *Table) inBase(h string) bool {
	if base, ok := strings.CutPrefix(h, "*."); ok {
		n := t.wild[base]
		return n != nil && n.host == h
	}
	c, ok := t.names[h]
	return ok && c.strength == 0 && c.n.host == h
}

// changedHost reports whether the base's claims of host are stale.
func (t *Table) changedHost(host string) bool {
	_, ok := t.current[host]
	return ok
}

// pick is the better of the base's claim b, unless its host changed, and the overlay's claim o.
func (t *Table) pick(b claim, bok bool, o claim, ook bool) (claim, bool) {
	if bok && t.changedHost(b.n.host) {
		bok = false
	}
	if ook && (!bok || o.beats(b)) {
		return o, true
	}
	return b, bok
}

// claimOf is the claim on key: the base's, or for a table made by Update the better of the base's,
// unless its host changed, and the overlay's.
func (t *Table) claimOf(key []byte) (claim, bool) {
	c, ok := t.names[string(key)]
	if t.over == nil {
		return c, ok
	}
	o, ook := t.over.names[string(key)]
	return t.pick(c, ok, o, ook)
}

// wildOf is the wildcard whose base is key: one host per base, the overlay's, or the base's when
// that did not change.
func (t *Table) wildOf(key []byte) *name {
	n := t.wild[string(key)]
	if t.over == nil {
		return n
	}
	if n != nil && t.changedHost(n.host) {
		n = nil
	}
	if n == nil && len(t.over.wild) > 0 {
		n = t.over.wild[string(key)]
	}
	return n
}

// reverseHosts returns the hosts with address-derived key a, from the base and the overlay.
func (t *Table) reverseHosts(base, over []string) []string {
	var out []string
	for _, h := range base {
		if !t.changedHost(h) {
			out = append(out, h)
		}
	}
	out = append(out, over...)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 1 {
		out = pruneAncestors(out)
	}
	return out
}
