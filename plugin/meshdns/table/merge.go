package table

import (
	"slices"
	"strings"
)

// Merge folds the snapshots of several sources into one list with one entry per host. Where hosts
// collide the better-ranked registry wins, then an entry every client sees over one limited to a
// namespace (VisibleTo; of two limited to different namespaces, the first); entries of equal rank
// and visibility keep the first's metadata and take the union of the addresses. Hosts come out in the order they first appear, so the result depends only on
// the order of the snapshots, never on map iteration. Inputs are not modified; entries without a
// collision are copied as they are, sharing their slices.
func Merge(snapshots ...[]Entry) []Entry {
	n := 0
	for _, snap := range snapshots {
		n += len(snap)
	}
	out := make([]Entry, 0, n)
	index := make(map[string]int, n) // canonical host -> position in out
	merged := make(map[int]bool)     // positions whose slices out owns, safe to append to
	for _, snap := range snapshots {
		for i := range snap {
			e := &snap[i]
			key := canonicalHost(e.Host)
			at, ok := index[key]
			switch {
			case !ok:
				index[key] = len(out)
				out = append(out, *e)
			case e.rank() < out[at].rank(), e.rank() == out[at].rank() && out[at].Limited() && !e.Limited():
				out[at] = *e // a better registry, or an entry every client sees over one some do
				delete(merged, at)
			case !sameVisibility(e, &out[at]):
				// Seen by other clients: its addresses must not reach the ones it is hidden from.
			case e.rank() == out[at].rank():
				cur := &out[at]
				if !merged[at] {
					cur.Addrs, cur.AltHosts = slices.Clone(cur.Addrs), slices.Clone(cur.AltHosts)
					cur.SRV, cur.TXT = slices.Clone(cur.SRV), slices.Clone(cur.TXT)
					merged[at] = true
				}
				cur.Addrs = appendMissing(cur.Addrs, e.Addrs)
				cur.AltHosts = appendMissing(cur.AltHosts, e.AltHosts)
				cur.SRV = appendMissing(cur.SRV, e.SRV)
				cur.TXT = appendMissing(cur.TXT, e.TXT)
				cur.Authoritative = cur.Authoritative || e.Authoritative
			}
		}
	}
	return out
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
