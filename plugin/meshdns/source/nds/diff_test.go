package nds

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// held applies a differ's output to the hosts it holds, as the store folds changes.
type held map[string][]table.Entry

func (h held) apply(t *testing.T, changed []table.Entry, removed []string, first bool) {
	t.Helper()
	if first {
		clear(h)
	}
	seen := map[string]bool{}
	for _, e := range changed {
		ch := table.CanonicalHost(e.Host)
		if !seen[ch] {
			h[ch], seen[ch] = nil, true
		}
		h[ch] = append(h[ch], e)
	}
	for _, ch := range removed {
		if seen[ch] {
			t.Fatalf("host %s both changed and removed", ch)
		}
		if _, ok := h[ch]; !ok {
			t.Fatalf("host %s removed but not held", ch)
		}
		delete(h, ch)
	}
}

// TestDifferFollowsPushes checks that after every push of a random sequence (hosts added, removed,
// moved, named twice in different cases), the hosts the differ's output built up are those of
// decoding the push whole, and that an unchanged push yields nothing.
func TestDifferFollowsPushes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var entries []table.Entry
	for i := range 300 {
		entries = append(entries, testEntry(i, 0))
	}
	d := newDiffer()
	h := held{}
	for push := range 60 {
		next := slices.Clone(entries)
		for range rng.IntN(20) {
			i := rng.IntN(len(next))
			switch rng.IntN(4) {
			case 0: // moved
				next[i] = testEntry(i, push+1)
			case 1: // gone
				next = slices.Delete(next, i, i+1)
			case 2: // new
				next = append(next, testEntry(1000+push*20+rng.IntN(20), push))
			case 3: // also named in upper case
				e := next[i]
				e.Host = strings.ToUpper(e.Host)
				next = append(next, e)
			}
		}
		next = dedupe(next)
		b := EncodeNameTable(next)
		changed, removed, first, err := d.apply(b)
		if err != nil {
			t.Fatalf("push %d: %v", push, err)
		}
		if first != (push == 0) {
			t.Fatalf("push %d: first = %v", push, first)
		}
		h.apply(t, changed, removed, first)
		want, err := DecodeNameTable(b)
		if err != nil {
			t.Fatal(err)
		}
		if g := table.GroupByHost(want); !maps.EqualFunc(g, h, table.EntriesEqual) {
			t.Fatalf("push %d: the differ's hosts differ from the push's:\n%v\nwant\n%v", push, h, g)
		}
		if d.live != len(table.GroupByHost(want)) {
			t.Fatalf("push %d: %d hosts live, want %d", push, d.live, len(table.GroupByHost(want)))
		}
		if changed, removed, _, _ := d.apply(b); len(changed)+len(removed) != 0 {
			t.Fatalf("push %d again: changed %v, removed %v", push, changed, removed)
		}
		entries = next
	}
}

// TestDifferRejectsAndKeeps checks that a push with a bad entry is rejected as DecodeNameTable
// rejects it, and that the next push is compared with the last one applied.
func TestDifferRejectsAndKeeps(t *testing.T) {
	d := newDiffer()
	good := []table.Entry{testEntry(1, 0), testEntry(2, 0)}
	if _, _, _, err := d.apply(EncodeNameTable(good)); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]table.Entry{
		"given twice": {testEntry(1, 0), testEntry(3, 0), testEntry(3, 1)},
		"bad host":    {testEntry(1, 5), {Host: "bad..host"}},
		"bad address": {testEntry(4, 0), {Host: "x.example", Addrs: []netip.Addr{{}}}},
	} {
		_, _, _, err := d.apply(EncodeNameTable(bad))
		_, want := DecodeNameTable(EncodeNameTable(bad))
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("%s: error %v, want %v", name, err, want)
		}
	}
	changed, removed, first, err := d.apply(EncodeNameTable([]table.Entry{testEntry(1, 0), testEntry(3, 0)}))
	if err != nil || first {
		t.Fatalf("err %v, first %v", err, first)
	}
	if len(changed) != 1 || changed[0].Host != testEntry(3, 0).Host || !slices.Equal(removed, []string{table.CanonicalHost(testEntry(2, 0).Host)}) {
		t.Fatalf("changed %v, removed %v; want host 3 new and host 2 gone", changed, removed)
	}
}

func testEntry(i, version int) table.Entry {
	ns := fmt.Sprintf("ns%d", i%7)
	return table.Entry{Host: fmt.Sprintf("svc%d.%s.svc.cluster.local", i, ns), Registry: table.RegistryKubernetes,
		ShortName: fmt.Sprintf("svc%d", i), Namespace: ns,
		Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(version), byte(i >> 8), byte(i)})}}
}

// dedupe drops the later entries of a host given twice in the same case.
func dedupe(entries []table.Entry) []table.Entry {
	seen := map[string]bool{}
	return slices.DeleteFunc(entries, func(e table.Entry) bool {
		if seen[e.Host] {
			return true
		}
		seen[e.Host] = true
		return false
	})
}

// FuzzDiffer: over any sequence of three pushes, the differ accepts a push exactly when decoding it
// whole does, and the hosts its output built up are then those of the push; after a rejected push
// they are those of the last one applied.
func FuzzDiffer(f *testing.F) {
	a := EncodeNameTable([]table.Entry{testEntry(1, 0), testEntry(2, 0), testEntry(3, 0)})
	moved := testEntry(2, 1)
	upper := testEntry(3, 0)
	upper.Host = strings.ToUpper(upper.Host)
	b := EncodeNameTable([]table.Entry{testEntry(1, 0), moved, testEntry(3, 0), upper})
	f.Add(a, b, a)
	f.Add(a, []byte{0x0a, 0x03, 0x0a, 0x01, 0x61}, b)
	f.Add(b, append(slices.Clone(a), a...), a)
	f.Fuzz(func(t *testing.T, p1, p2, p3 []byte) {
		d := newDiffer()
		h, last := held{}, held{}
		for i, p := range [][]byte{p1, p2, p3} {
			changed, removed, first, err := d.apply(p)
			want, werr := DecodeNameTable(p)
			if (err == nil) != (werr == nil) {
				t.Fatalf("push %d: differ error %v, decoding error %v", i, err, werr)
			}
			if err != nil {
				if !maps.EqualFunc(h, last, table.EntriesEqual) {
					t.Fatalf("push %d rejected but the hosts moved", i)
				}
				continue
			}
			h.apply(t, changed, removed, first)
			if g := table.GroupByHost(want); !maps.EqualFunc(g, h, table.EntriesEqual) {
				t.Fatalf("push %d: the differ's hosts differ from the push's:\n%v\nwant\n%v", i, h, g)
			}
			last = maps.Clone(h)
		}
	})
}
