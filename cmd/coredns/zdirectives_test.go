package main

import (
	"bytes"
	"os"
	"slices"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"

	"github.com/meshdns/meshdns/cmd/coredns/internal/plugincfg"
)

// TestDirectivesMatchPluginCfg fails when plugin.cfg changed without "go generate ./cmd/coredns".
func TestDirectivesMatchPluginCfg(t *testing.T) {
	f, err := os.Open("../../plugin.cfg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plugins, err := plugincfg.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plugincfg.Generate(plugins)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("zdirectives.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("zdirectives.go is out of date with plugin.cfg: run 'go generate ./cmd/coredns'")
	}
}

func TestDirectiveOrder(t *testing.T) {
	idx := func(name string) int { return slices.Index(directives, name) }
	for _, name := range dnsserver.Directives {
		if idx(name) < 0 {
			t.Errorf("stock directive %q missing from plugin.cfg", name)
		}
	}
	// meshdns answers from its table before cache (fresh, and faster than a cache hit), after the
	// plugins that rewrite or filter the question, and before every other source of answers.
	if !(idx("rewrite") < idx("meshdns") && idx("acl") < idx("meshdns") && idx("meshdns")+1 == idx("cache") &&
		idx("cache") < idx("hosts") && idx("hosts") < idx("kubernetes") && idx("kubernetes") < idx("forward")) {
		t.Errorf("meshdns must sit just above cache, below rewrite and acl: %v", directives)
	}
}

func TestPluginCfgErrors(t *testing.T) {
	for _, in := range []string{"nocolon\n", "a:x\na:y\n", ":pkg\n"} {
		if _, err := plugincfg.Parse(bytes.NewBufferString(in)); err == nil {
			t.Errorf("%q parsed without error", in)
		}
	}
}
