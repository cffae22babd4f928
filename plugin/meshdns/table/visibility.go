package table

import (
	"slices"
	"strings"
)

// visibility is who may see a name, prepared for the lookup: the namespaces of Entry.VisibleTo and
// Entry.HiddenFrom, lower case.
type visibility struct {
	to     []string // nil: every namespace but hidden's
	hidden []string
}

// newVisibility returns e's visibility, or nil when every client sees e.
func newVisibility(e *Entry) *visibility {
	if !e.Limited() {
		return nil
	}
	lower := func(list []string) []string {
		if list == nil {
			return nil
		}
		out := make([]string, len(list))
		for i, s := range list {
			out[i] = strings.ToLower(s)
		}
		return out
	}
	v := &visibility{to: lower(e.VisibleTo), hidden: lower(e.HiddenFrom)}
	slices.Sort(v.to) // per-namespace copies folded by Merge list every namespace with clients
	slices.Sort(v.hidden)
	return v
}

// sees reports whether the clients of namespace ns (lower case, as views hold it) see the name.
func (v *visibility) sees(ns string) bool {
	return (v.to == nil || contains(v.to, ns)) && !contains(v.hidden, ns)
}

// contains reports whether sorted list holds ns: a scan for a few, a binary search past them.
func contains(list []string, ns string) bool {
	if len(list) <= 8 {
		return slices.Contains(list, ns)
	}
	_, ok := slices.BinarySearch(list, ns)
	return ok
}
