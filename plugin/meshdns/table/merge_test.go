package table

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// seen returns a copy of e limited to the clients of the namespaces in to (nil: all), hidden from those
// in hidden.
func seen(e Entry, to, hidden []string) Entry {
	e.VisibleTo, e.HiddenFrom = to, hidden
	return e
}

// variantsOf renders Merge's output: one "host addrs to/hidden" line per entry.
func variantsOf(es []Entry) string {
	var out []string
	for _, e := range es {
		var as []string
		for _, a := range e.Addrs {
			as = append(as, a.String())
		}
		vis := "all"
		if e.VisibleTo != nil {
			vis = "[" + strings.Join(e.VisibleTo, " ") + "]"
		}
		if len(e.HiddenFrom) > 0 {
			vis += "-[" + strings.Join(e.HiddenFrom, " ") + "]"
		}
		out = append(out, fmt.Sprintf("%s %s %s %s", e.Host, e.Registry, strings.Join(as, ","), vis))
	}
	return strings.Join(out, "; ")
}

func TestMergeVariants(t *testing.T) {
	a1, a2, a3 := external("api.example.com", "240.0.0.1"), external("api.example.com", "240.0.0.2"), external("api.example.com", "240.0.0.3")
	kube := k8s("api.example.com", "api", "ns", "10.0.0.1")
	tests := []struct {
		name string
		in   []Entry
		want string
	}{
		{"same visibility: the union",
			[]Entry{seen(a1, []string{"a"}, nil), seen(a2, []string{"a"}, nil)},
			"api.example.com External 240.0.0.1,240.0.0.2 [a]"},
		{"issue 18: a's own export first, then everyone's",
			[]Entry{seen(a1, []string{"a"}, nil), a2},
			"api.example.com External 240.0.0.1 [a]; api.example.com External 240.0.0.2 all"},
		{"a limited entry after one every client sees never answers",
			[]Entry{a2, seen(a1, []string{"a"}, nil)},
			"api.example.com External 240.0.0.2 all"},
		{"per-namespace copies fold into one allow-list, sorted and without repeats",
			[]Entry{seen(a1, []string{"c"}, nil), seen(a1, []string{"a"}, nil), seen(a1, []string{"b", "a"}, nil), seen(a1, []string{"c"}, nil)},
			"api.example.com External 240.0.0.1 [a b c]"},
		{"different data for other namespaces: variants",
			[]Entry{seen(a1, []string{"a"}, nil), seen(a2, []string{"b"}, nil), seen(a1, []string{"c"}, nil)},
			"api.example.com External 240.0.0.1 [a c]; api.example.com External 240.0.0.2 [b]"},
		{"no fold past a variant the copy's clients see first",
			[]Entry{seen(a1, []string{"a"}, nil), seen(a2, []string{"b", "c"}, nil), seen(a1, []string{"b", "d"}, nil)},
			"api.example.com External 240.0.0.1 [a]; api.example.com External 240.0.0.2 [b c]; api.example.com External 240.0.0.1 [b d]"},
		{"a copy whose clients all get an earlier variant is dropped",
			[]Entry{seen(a2, []string{"b", "c"}, nil), seen(a1, []string{"b"}, nil)},
			"api.example.com External 240.0.0.2 [b c]"},
		{"hidden from some: no fold, variants",
			[]Entry{seen(a1, nil, []string{"a"}), seen(a2, []string{"a"}, nil), seen(a3, nil, nil)},
			"api.example.com External 240.0.0.1 all-[a]; api.example.com External 240.0.0.2 [a]; api.example.com External 240.0.0.3 all"},
		{"hidden from more than an earlier variant: never answers",
			[]Entry{seen(a1, nil, []string{"a"}), seen(a2, nil, []string{"a", "b"})},
			"api.example.com External 240.0.0.1 all-[a]"},
		{"an allow-list and a hidden list: the namespaces left",
			[]Entry{seen(a1, []string{"a", "b"}, []string{"b"}), seen(a2, []string{"b"}, nil)},
			"api.example.com External 240.0.0.1 [a b]-[b]; api.example.com External 240.0.0.2 [b]"},
		{"a better rank every client sees wins outright",
			[]Entry{seen(a1, []string{"a"}, nil), kube},
			"api.example.com Kubernetes 10.0.0.1 all"},
		{"a better rank some clients see goes first, the worse answers the rest",
			[]Entry{a1, seen(kube, []string{"a"}, nil)},
			"api.example.com Kubernetes 10.0.0.1 [a]; api.example.com External 240.0.0.1 all"},
		{"a worse rank after a better one its clients all see is dropped",
			[]Entry{seen(kube, []string{"a", "b"}, nil), seen(a1, []string{"b"}, nil), seen(a2, []string{"c"}, nil)},
			"api.example.com Kubernetes 10.0.0.1 [a b]; api.example.com External 240.0.0.2 [c]"},
		{"a fold that covers a worse-ranked variant drops it",
			[]Entry{seen(kube, []string{"a"}, nil), seen(a1, []string{"b"}, nil), seen(kube, []string{"b"}, nil)},
			"api.example.com Kubernetes 10.0.0.1 [a b]"},
		{"an empty allow-list is seen by no one: it covers nothing",
			[]Entry{seen(a1, []string{}, nil), seen(a2, []string{"a"}, nil)},
			"api.example.com External 240.0.0.1 []; api.example.com External 240.0.0.2 [a]"},
		{"namespaces compare case-insensitively",
			[]Entry{seen(a1, []string{"Shop"}, nil), seen(a2, []string{"shop"}, nil)},
			"api.example.com External 240.0.0.1 [Shop]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Merge(tt.in)
			if s := variantsOf(got); s != tt.want {
				t.Errorf("\n got  %s\n want %s", s, tt.want)
			}
			// Merging again changes nothing: the store merges, then Build and Update merge again.
			if again := variantsOf(Merge(got)); again != tt.want {
				t.Errorf("merged again:\n got  %s\n want %s", again, tt.want)
			}
		})
	}
}

func TestMergeVariantsKeepHostOrder(t *testing.T) {
	x, y := external("x.example", "240.0.0.1"), external("y.example", "240.0.0.2")
	got := Merge([]Entry{seen(x, []string{"a"}, nil), y}, []Entry{x, seen(y, []string{"a"}, nil)})
	want := "x.example External 240.0.0.1 [a]; x.example External 240.0.0.1 all; y.example External 240.0.0.2 all"
	if s := variantsOf(got); s != want {
		t.Errorf("\n got  %s\n want %s", s, want)
	}
}

func TestMergeFoldDoesNotModifyInput(t *testing.T) {
	a := seen(external("x.example", "240.0.0.1"), append(make([]string, 0, 4), "b"), nil)
	b := seen(external("x.example", "240.0.0.1"), []string{"a"}, nil)
	out := Merge([]Entry{a, b})
	if !slices.Equal(a.VisibleTo, []string{"b"}) || a.VisibleTo[:2][1] != "" || !slices.Equal(b.VisibleTo, []string{"a"}) {
		t.Errorf("Merge wrote into its input: %v %v", a.VisibleTo[:2], b.VisibleTo)
	}
	if len(out) != 1 || !slices.Equal(out[0].VisibleTo, []string{"a", "b"}) {
		t.Errorf("merged %+v", out)
	}
}

// perNamespaceCopies is what an NDS source with one subscription per client namespace publishes:
// every host once per namespace, each limited to it.
func perNamespaceCopies(hosts, namespaces int) [][]Entry {
	snaps := make([][]Entry, namespaces)
	for ns := range namespaces {
		for h := range hosts {
			e := external(fmt.Sprintf("h%d.example.com", h), fmt.Sprintf("240.0.%d.%d", h>>8&255, h&255))
			snaps[ns] = append(snaps[ns], seen(e, []string{fmt.Sprintf("ns%d", ns)}, nil))
		}
	}
	return snaps
}

func TestMergeFoldsPerNamespaceCopies(t *testing.T) {
	got := Merge(perNamespaceCopies(1000, 50)...)
	if len(got) != 1000 {
		t.Fatalf("%d entries, want 1000", len(got))
	}
	for _, e := range got {
		if len(e.VisibleTo) != 50 || !slices.IsSorted(e.VisibleTo) {
			t.Fatalf("%s: VisibleTo %v", e.Host, e.VisibleTo)
		}
	}
}

// BenchmarkMergeFold merges 10k hosts from 50 namespaces: time grows with the input, not its square.
func BenchmarkMergeFold(b *testing.B) {
	for _, namespaces := range []int{10, 50} {
		snaps := perNamespaceCopies(10_000, namespaces)
		b.Run(fmt.Sprintf("10k-hosts-%d-namespaces", namespaces), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Merge(snaps...)
			}
		})
	}
}

// TestMergeProperties merges random hosts with random variants and checks what lookups rely on: a
// host's variants are adjacent, none is seen only by clients an earlier one answers, and merging the
// result again answers every client alike (the store merges, then Build and Update merge again).
func TestMergeProperties(t *testing.T) {
	namespaces := []string{"", "n0", "n1", "n2", "n3"}
	answer := func(es []Entry, host, ns string) string {
		for _, e := range es {
			if canonicalHost(e.Host) == host && e.SeenFrom(ns) {
				return fmt.Sprint(e.Addrs, e.Registry, e.AltHosts, e.Alias, e.SRV, e.TXT)
			}
		}
		return "none"
	}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 2))
		var in []Entry
		for range 1 + r.IntN(6) {
			in = append(in, randomVariants(r, randomHost(r))...)
		}
		r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		out := Merge(in)
		done := map[string]bool{}
		for i := range out {
			h := canonicalHost(out[i].Host)
			if i > 0 && canonicalHost(out[i-1].Host) == h {
				continue
			}
			if done[h] {
				t.Fatalf("seed %d: %s's variants apart: %s", seed, h, variantsOf(out))
			}
			done[h] = true
		}
		for i := range out {
			for j := i - 1; j >= 0 && canonicalHost(out[j].Host) == canonicalHost(out[i].Host); j-- {
				if out[j].covers(&out[i]) {
					t.Fatalf("seed %d: variant %d never answers: %s", seed, i, variantsOf(out))
				}
			}
		}
		again := Merge(out)
		for h := range done {
			for _, ns := range namespaces {
				if a, b := answer(out, h, ns), answer(again, h, ns); a != b {
					t.Fatalf("seed %d: %s from %q: %s, merged again %s\n%s\n%s", seed, h, ns, a, b, variantsOf(out), variantsOf(again))
				}
			}
		}
	}
}

// TestChanges: a host whose entries differ is a change with its new entries, a host gone a change
// with none, an equal host no change; GroupByHost keys by the canonical host.
func TestChanges(t *testing.T) {
	old := GroupByHost([]Entry{
		{Host: "same.example", Addrs: addrs("240.0.0.1")},
		{Host: "Moved.example", Addrs: addrs("240.0.0.2")},
		{Host: "gone.example", Addrs: addrs("240.0.0.3")},
	})
	next := GroupByHost([]Entry{
		{Host: "same.example", Addrs: addrs("240.0.0.1")},
		{Host: "moved.example", Addrs: addrs("240.0.0.4")},
		{Host: "new.example", Addrs: addrs("240.0.0.5")},
	})
	got := Changes(old, next)
	if len(got) != 3 || len(got["moved.example."]) != 1 || len(got["new.example."]) != 1 {
		t.Fatalf("changes %v", got)
	}
	if es, ok := got["gone.example."]; !ok || es != nil {
		t.Errorf("gone.example.: %v, %v; want a change with no entries", es, ok)
	}
	if _, ok := got["same.example."]; ok {
		t.Error("an equal host is a change")
	}
}
