package kubernetes

import (
	"slices"
	"testing"
)

func TestKeyList(t *testing.T) {
	var l keyList
	if got := slices.Collect(l.all()); len(got) != 0 {
		t.Errorf("empty list yields %q", got)
	}
	for _, k := range []string{"s/b/x", "e/a/y", "s/b/x", "z/clusterset.local", "i/c/z"} {
		l = l.with(k)
	}
	want := []string{"e/a/y", "i/c/z", "s/b/x", "z/clusterset.local"}
	if got := slices.Collect(l.all()); !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	l = l.without("i/c/z").without("s/none/none")
	if got := slices.Collect(l.all()); !slices.Equal(got, []string{"e/a/y", "s/b/x", "z/clusterset.local"}) {
		t.Errorf("after a delete: %q", got)
	}
	for _, k := range []string{"e/a/y", "z/clusterset.local", "s/b/x"} {
		l = l.without(k)
	}
	if l != "" {
		t.Errorf("every key deleted: %q left", l)
	}
	one := "s/ns/name"
	if l := keyList("").with(one); string(l) != one || len(slices.Collect(l.all())) != 1 {
		t.Errorf("one key: %q", l)
	}
}
