package table

import (
	"net/netip"
	"slices"
	"strings"
)

// Merge folds the snapshots of several sources into one list with one entry per host. Where hosts
// collide the better-ranked registry wins; entries of equal rank keep the first's metadata and take the
// union of the addresses. The result does not depend on map iteration order: hosts come out sorted.
func Merge(snapshots ...[]Entry) []Entry {
	byHost := make(map[string]*Entry)
	for _, snap := range snapshots {
		for i := range snap {
			e := &snap[i]
			key := canonicalHost(e.Host)
			cur, ok := byHost[key]
			switch {
			case !ok:
				c := *e
				c.Addrs = slices.Clone(e.Addrs)
				byHost[key] = &c
			case e.rank() < cur.rank():
				c := *e
				c.Addrs = slices.Clone(e.Addrs)
				byHost[key] = &c
			case e.rank() == cur.rank():
				cur.Addrs = appendMissing(cur.Addrs, e.Addrs)
				cur.AltHosts = appendMissingStrings(cur.AltHosts, e.AltHosts)
			}
		}
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	out := make([]Entry, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, *byHost[h])
	}
	return out
}

func appendMissing(dst, src []netip.Addr) []netip.Addr {
	for _, a := range src {
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}

func appendMissingStrings(dst, src []string) []string {
	for _, s := range src {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// canonicalHost is the lower-case fully qualified form of a host: the key every index uses.
func canonicalHost(h string) string {
	h = strings.ToLower(h)
	if !strings.HasSuffix(h, ".") {
		h += "."
	}
	return h
}
