package table

import (
	"slices"
	"strings"
)

// Merge folds the snapshots of several sources into one list, in which a host has one entry or, when
// different clients must get different answers, several: its variants, adjacent, in the order a
// lookup tries them (the first variant a client sees answers it). For each entry of a host, in order:
//   - an entry of the same rank and visibility as a variant joins it: the variant keeps its metadata
//     and takes the union of the addresses, alt hosts, SRV and TXT;
//   - an allow-list (VisibleTo, no HiddenFrom) identical to one of equal rank but for VisibleTo joins
//     it, VisibleTo the union, unless a variant between them is seen by some of its namespaces
//     (per-namespace copies of one host fold into one entry);
//   - otherwise it becomes a variant after those of a better or equal rank (Kubernetes beats
//     ServiceEntry), unless one of them is seen by every client it is (it would never answer); then
//     the worse-ranked variants whose clients all see it are dropped, as are those a fold covers.
//
// So a better rank wins outright only over entries whose clients all see it, and of equal ranks the
// first wins for the clients that see it: sources put first what should win (Istio: a Sidecar's own
// namespace's service). Hosts come out in the order they first appear, so the result depends only on
// the order of the snapshots, never on map iteration. Inputs are not modified; entries without a
// collision are copied as they are, sharing their slices.
func Merge(snapshots ...[]Entry) []Entry {
	n := 0
	for _, snap := range snapshots {
		n += len(snap)
	}
	out := make([]Entry, 0, n)
	index := make(map[string]int, n)         // canonical host -> position in out
	merged := make(map[int]bool)             // positions whose slices out owns, safe to append to
	variants := make(map[int][]mergeVariant) // positions of hosts that took a second variant: all of them
	var buf [256]byte
	for _, snap := range snapshots {
		for i := range snap {
			e := &snap[i]
			key := appendLower(buf[:0], e.Host) // the canonical host, without allocating for a repeat
			at, ok := index[string(key)]
			switch {
			case !ok:
				index[string(key)] = len(out)
				out = append(out, *e)
			case variants[at] != nil:
				variants[at] = addVariant(variants[at], e)
			case e.rank() == out[at].rank() && sameVisibility(e, &out[at]):
				if !merged[at] {
					own(&out[at])
					merged[at] = true
				}
				union(&out[at], e) // the common collision: one host from two sources
			default:
				variants[at] = addVariant([]mergeVariant{{Entry: out[at], owned: merged[at]}}, e)
			}
		}
	}
	if len(variants) == 0 {
		return out
	}
	flat := make([]Entry, 0, len(out)+len(variants))
	for at := range out {
		vs, ok := variants[at]
		if !ok {
			flat = append(flat, out[at])
			continue
		}
		for _, v := range vs {
			if v.folded {
				slices.Sort(v.VisibleTo)
				v.VisibleTo = slices.Compact(v.VisibleTo)
			}
			flat = append(flat, v.Entry)
		}
	}
	return flat
}

// mergeVariant is a variant of a host being merged, with what Merge owns of it.
type mergeVariant struct {
	Entry
	owned  bool // Addrs, AltHosts, SRV and TXT are Merge's copies, safe to append to
	folded bool // VisibleTo is Merge's copy, unsorted and with repeats until the end
}

// addVariant merges e into the variants of its host by Merge's rules.
func addVariant(vs []mergeVariant, e *Entry) []mergeVariant {
	// Variants are sorted by rank: e's place, pos, is after those of its rank or better, and its rank
	// starts at first.
	pos := len(vs)
	for pos > 0 && vs[pos-1].rank() > e.rank() {
		pos--
	}
	first := pos
	for first > 0 && vs[first-1].rank() == e.rank() {
		first--
	}
	for i := first; i < pos; i++ {
		if sameVisibility(&vs[i].Entry, e) {
			if !vs[i].owned {
				own(&vs[i].Entry)
				vs[i].owned = true
			}
			union(&vs[i].Entry, e)
			return vs
		}
	}
	if e.allowList() {
		// From the last back: folding past a variant some of e's clients see would change their answer.
		for i := pos - 1; i >= first; i-- {
			v := &vs[i]
			if v.allowList() && sameData(&v.Entry, e) {
				if !v.folded {
					v.VisibleTo = slices.Clone(v.VisibleTo)
					v.folded = true
				}
				v.VisibleTo = append(v.VisibleTo, e.VisibleTo...)
				return dropCovered(vs, i)
			}
			if v.overlaps(e) {
				break
			}
		}
	}
	for i := range vs[:pos] {
		if vs[i].covers(e) {
			return vs // every client of e gets an earlier variant
		}
	}
	vs = slices.Insert(vs, pos, mergeVariant{Entry: *e})
	return dropCovered(vs, pos)
}

// dropCovered drops the variants after vs[i] that every client of vs[i] sees: they would never answer.
func dropCovered(vs []mergeVariant, i int) []mergeVariant {
	cover := &vs[i].Entry
	kept := slices.DeleteFunc(vs[i+1:], func(v mergeVariant) bool { return cover.covers(&v.Entry) })
	return vs[:i+1+len(kept)]
}

// own replaces e's slices that union appends to with copies.
func own(e *Entry) {
	e.Addrs, e.AltHosts = slices.Clone(e.Addrs), slices.Clone(e.AltHosts)
	e.SRV, e.TXT = slices.Clone(e.SRV), slices.Clone(e.TXT)
}

// union adds e's addresses, alt hosts, SRV and TXT records to cur, whose slices Merge owns.
func union(cur, e *Entry) {
	cur.Addrs = appendMissing(cur.Addrs, e.Addrs)
	cur.AltHosts = appendMissing(cur.AltHosts, e.AltHosts)
	cur.SRV = appendMissing(cur.SRV, e.SRV)
	cur.TXT = appendMissing(cur.TXT, e.TXT)
	cur.Authoritative = cur.Authoritative || e.Authoritative
}

func appendMissing[T comparable](dst, src []T) []T {
	for _, a := range src {
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}

// canonicalHost is the lower-case fully qualified form of a host: the key every index uses.
func canonicalHost(h string) string {
	if isCanonical(h) {
		return h // most sources hand hosts over this way: no copy
	}
	h = strings.ToLower(h)
	if !strings.HasSuffix(h, ".") {
		h += "."
	}
	return h
}

func isCanonical(h string) bool {
	if !strings.HasSuffix(h, ".") {
		return false
	}
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return false
		}
	}
	return true
}

// CanonicalHost is the key the table files host under: lower case, fully qualified.
func CanonicalHost(h string) string { return canonicalHost(h) }

// GroupByHost is entries by canonical host, each host's in their order: what Update and Change take.
func GroupByHost(entries []Entry) map[string][]Entry {
	m := make(map[string][]Entry, len(entries))
	for _, e := range entries {
		h := canonicalHost(e.Host)
		m[h] = append(m[h], e)
	}
	return m
}

// Changes is what turns old into next, both by canonical host (GroupByHost): each host whose entries
// differ with its entries in next, nil for a host next lacks.
func Changes(old, next map[string][]Entry) map[string][]Entry {
	changes := map[string][]Entry{}
	for h, es := range next {
		if !EntriesEqual(old[h], es) {
			changes[h] = es
		}
	}
	for h := range old {
		if _, ok := next[h]; !ok {
			changes[h] = nil
		}
	}
	return changes
}
