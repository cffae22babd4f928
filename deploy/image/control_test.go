package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// aptShow is apt-cache show's output for two packages, cut down.
const aptShow = `Package: iptables
Version: 1.8.9-2
Architecture: amd64
Depends: libip4tc2 (= 1.8.9-2), libxtables12 (= 1.8.9-2), netbase (>= 6.0), libc6 (>= 2.34)
Recommends: nftables
Tag: admin::configuring, implemented-in::c,
 network::firewall, protocol::ethernet
SHA256: 2928d3ca6ca8a3dc3f423f6752822b1f3614a5ba609ff7806bcba4449ffe90e1

Package: netbase
Version: 6.4
Architecture: all
Filename: pool/main/n/netbase/netbase_6.4_all.deb

`

func TestParseStanzas(t *testing.T) {
	got, err := parseStanzas(aptShow)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d paragraphs, want 2: %q", len(got), got)
	}
	if got[0]["package"] != "iptables" || got[0]["version"] != "1.8.9-2" || got[1]["architecture"] != "all" {
		t.Errorf("fields: %q", got)
	}
	if tag := got[0]["tag"]; tag != "admin::configuring, implemented-in::c,\nnetwork::firewall, protocol::ethernet" {
		t.Errorf("continued field: %q", tag)
	}
	// Field names are case-insensitive; a tab continues as a space does.
	got, err = parseStanzas("PACKAGE: x\nDescription: one\n\ttwo\n \n\nPackage: y")
	if err != nil || len(got) != 2 || got[0]["package"] != "x" || got[0]["description"] != "one\ntwo" || got[1]["package"] != "y" {
		t.Errorf("got %q, %v", got, err)
	}

	for _, bad := range []struct{ text, want string }{
		{" continued\nPackage: x", "line 1: continuation"},
		{"Package x", `line 1: "Package x" is not a Field: value line`},
		{"Package: x\n-Bad: y", "line 2"},
		{"Package: x\nVersion: 1\nversion: 2", "line 3: field version twice"},
	} {
		if _, err := parseStanzas(bad.text); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("parseStanzas(%q) = %v, want an error with %q", bad.text, err, bad.want)
		}
	}
}

func TestDependsNames(t *testing.T) {
	for _, c := range []struct {
		field string
		want  []string
	}{
		{"", nil},
		{"libc6 (>= 2.34), libmnl0 (>= 1.0.3-4~)", []string{"libc6", "libmnl0"}},
		{"debconf (>= 0.5) | debconf-2.0", []string{"debconf"}},
		{"python3:any, libfoo:amd64 (= 1) [amd64]", []string{"python3", "libfoo"}},
		{" aa ,, b2\n ,c+d.e-f ", []string{"aa", "b2", "c+d.e-f"}},
	} {
		got, err := dependsNames(c.field)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("dependsNames(%q) = %q, %v; want %q", c.field, got, err, c.want)
		}
	}
	for _, bad := range []string{"Libc6", "a, (>= 1)", "x", "| b", "ab:"} {
		if got, err := dependsNames(bad); err == nil {
			t.Errorf("dependsNames(%q) = %q, want an error", bad, got)
		}
	}
}

// format writes stanzas back as deb822, for the round trip below.
func format(stanzas []stanza) string {
	var b strings.Builder
	for _, s := range stanzas {
		for _, k := range slices.Sorted(maps.Keys(s)) {
			first, rest, _ := strings.Cut(s[k], "\n")
			b.WriteString(k + ": " + first + "\n")
			for line := range strings.SplitSeq(rest, "\n") {
				if line != "" {
					b.WriteString(" " + line + "\n")
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// FuzzParseStanzas checks that the parser never panics and that what it accepts reads back the same
// once written out again.
func FuzzParseStanzas(f *testing.F) {
	f.Add(aptShow)
	f.Add("Package: x\nDescription:\n one\n two\n\n\n# comment\nA: b")
	f.Fuzz(func(t *testing.T, text string) {
		got, err := parseStanzas(text)
		if err != nil {
			return
		}
		again, err := parseStanzas(format(got))
		if err != nil {
			t.Fatalf("rewritten %q: %v", format(got), err)
		}
		if !slices.EqualFunc(got, again, func(a, b stanza) bool { return maps.Equal(a, b) }) {
			t.Fatalf("%q read back as %q", got, again)
		}
	})
}

// FuzzDependsNames checks that every name it returns is a package name, and that the names alone,
// listed again, come back unchanged.
func FuzzDependsNames(f *testing.F) {
	f.Add("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any")
	f.Fuzz(func(t *testing.T, field string) {
		names, err := dependsNames(field)
		if err != nil {
			return
		}
		for _, n := range names {
			if m := packageName.FindStringSubmatch(n); m == nil || m[2] != "" {
				t.Fatalf("%q from %q is not a bare package name", n, field)
			}
		}
		again, err := dependsNames(strings.Join(names, ", "))
		if err != nil || !slices.Equal(names, again) {
			t.Fatalf("%q listed again gave %q, %v", names, again, err)
		}
	})
}
