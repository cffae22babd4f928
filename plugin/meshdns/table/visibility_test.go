package table

import (
	"fmt"
	"testing"
)

func TestVisibilitySees(t *testing.T) {
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("NS%02d", 99-i)) // unsorted, upper case: as sources may give them
	}
	tests := []struct {
		name        string
		to, hidden  []string
		sees, blind []string
	}{
		{"a list", []string{"b", "A"}, nil, []string{"a", "b"}, []string{"c", ""}},
		{"hidden from some", nil, []string{"X"}, []string{"a", ""}, []string{"x"}},
		{"both", []string{"a", "b"}, []string{"b"}, []string{"a"}, []string{"b", "c"}},
		{"a long list", many, []string{"ns50"}, []string{"ns00", "ns49", "ns99"}, []string{"ns50", "ns100", "ns", ""}},
		{"no one", []string{}, nil, nil, []string{"a", ""}},
	}
	for _, tt := range tests {
		v := newVisibility(&Entry{VisibleTo: tt.to, HiddenFrom: tt.hidden})
		for _, ns := range tt.sees {
			if !v.sees(ns) {
				t.Errorf("%s: %q does not see it", tt.name, ns)
			}
		}
		for _, ns := range tt.blind {
			if v.sees(ns) {
				t.Errorf("%s: %q sees it", tt.name, ns)
			}
		}
	}
	if newVisibility(&Entry{}) != nil {
		t.Error("an entry every client sees has a visibility")
	}
}
