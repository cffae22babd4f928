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
	return &visibility{to: lower(e.VisibleTo), hidden: lower(e.HiddenFrom)}
}

// sees reports whether the clients of namespace ns (lower case, as views hold it) see the name.
func (v *visibility) sees(ns string) bool {
	return (v.to == nil || slices.Contains(v.to, ns)) && !slices.Contains(v.hidden, ns)
}
