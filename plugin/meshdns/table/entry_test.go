package table

import "testing"

func TestCoversAndOverlaps(t *testing.T) {
	e := func(to, hidden []string) *Entry { return &Entry{VisibleTo: to, HiddenFrom: hidden} }
	all := e(nil, nil)
	tests := []struct {
		name             string
		a, b             *Entry
		covers, overlaps bool // a covers b; a and b overlap
	}{
		{"all covers all", all, all, true, true},
		{"all covers a list", all, e([]string{"x"}, nil), true, true},
		{"a list does not cover all", e([]string{"x"}, nil), all, false, true},
		{"a wider list", e([]string{"x", "y"}, nil), e([]string{"Y"}, nil), true, true},
		{"disjoint lists", e([]string{"x"}, nil), e([]string{"y"}, nil), false, false},
		{"hidden from fewer", e(nil, []string{"x"}), e(nil, []string{"x", "y"}), true, true},
		{"hidden from more", e(nil, []string{"x", "y"}), e(nil, []string{"x"}), false, true},
		{"hidden from the one listed", e(nil, []string{"x"}), e([]string{"x"}, nil), false, false},
		{"a list that hides its own", e([]string{"x", "y"}, []string{"y"}), e([]string{"y"}, nil), false, false},
		{"b hides what a lacks", e([]string{"x"}, nil), e([]string{"x", "y"}, []string{"y"}), true, true},
		{"seen by no one", e([]string{"x"}, nil), e([]string{}, nil), true, false},
	}
	for _, tt := range tests {
		if got := tt.a.covers(tt.b); got != tt.covers {
			t.Errorf("%s: covers %v, want %v", tt.name, got, tt.covers)
		}
		if got, back := tt.a.overlaps(tt.b), tt.b.overlaps(tt.a); got != tt.overlaps || back != got {
			t.Errorf("%s: overlaps %v (back %v), want %v", tt.name, got, back, tt.overlaps)
		}
	}
}

func TestSameDataIgnoresVisibility(t *testing.T) {
	a := external("x.example", "240.0.0.1")
	b := seen(a, []string{"n"}, []string{"m"})
	if !sameData(&a, &b) || a.Equal(&b) {
		t.Errorf("sameData %v, Equal %v", sameData(&a, &b), a.Equal(&b))
	}
	b.Addrs = addrs("240.0.0.2")
	if sameData(&a, &b) {
		t.Error("sameData ignores the addresses")
	}
}
