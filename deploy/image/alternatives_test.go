package main

import (
	"os"
	"path"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// testdata/iptables.postinst is bookworm's iptables 1.8.9-2 postinst, as dpkg-deb --ctrl-tarfile has it.
func TestParseAlternativesIptables(t *testing.T) {
	script, err := os.ReadFile("testdata/iptables.postinst")
	if err != nil {
		t.Fatal(err)
	}
	alts, err := parseAlternatives(string(script))
	if err != nil {
		t.Fatal(err)
	}
	if len(alts) != 6 {
		t.Fatalf("%d alternatives, want 6 (legacy and nft for iptables and ip6tables, nft for arptables and ebtables)", len(alts))
	}
	want := alternative{link: "/usr/sbin/iptables", name: "iptables", path: "/usr/sbin/iptables-legacy", priority: 10, slaves: []slave{
		{"/usr/sbin/iptables-restore", "iptables-restore", "/usr/sbin/iptables-legacy-restore"},
		{"/usr/sbin/iptables-save", "iptables-save", "/usr/sbin/iptables-legacy-save"},
	}}
	if !reflect.DeepEqual(alts[0], want) {
		t.Errorf("first alternative\n got %+v\nwant %+v", alts[0], want)
	}
	chosen, err := chooseAlternatives(alts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range chosen {
		got = append(got, a.link+" -> "+a.path)
	}
	// Auto mode: nft (20) over legacy (10), as bookworm has it.
	if w := []string{
		"/usr/sbin/iptables -> /usr/sbin/iptables-nft", "/usr/sbin/ip6tables -> /usr/sbin/ip6tables-nft",
		"/usr/sbin/arptables -> /usr/sbin/arptables-nft", "/usr/sbin/ebtables -> /usr/sbin/ebtables-nft",
	}; !reflect.DeepEqual(got, w) {
		t.Errorf("chosen %q, want %q", got, w)
	}
	if chosen[0].slaves[0].path != "/usr/sbin/iptables-nft-restore" {
		t.Errorf("iptables-restore follows %s, not the nft one", chosen[0].slaves[0].path)
	}
}

func TestParseAlternatives(t *testing.T) {
	for _, c := range []struct {
		script string
		want   []string // name:path:priority
	}{
		{"update-alternatives --quiet --install /usr/bin/x x /usr/bin/x.a 5", []string{"x:/usr/bin/x.a:5"}},
		{"if true; then update-alternatives --install /bin/x x /bin/y 1; fi", []string{"x:/bin/y:1"}},
		{"/usr/bin/update-alternatives --install /bin/x x /bin/y 1 && true", []string{"x:/bin/y:1"}},
		{"set -e; update-alternatives --install /bin/x x /bin/y 7;", []string{"x:/bin/y:7"}},
		{"update-alternatives --remove x /bin/y\nupdate-alternatives --set x /bin/y", nil},
		{"# update-alternatives --install /bin/x x /bin/y 1\necho update-alternatives --install", nil},
		{"command -v update-alternatives >/dev/null", nil},
		{"update-alternatives --log /var/log/a --install /bin/x x /bin/y 3", []string{"x:/bin/y:3"}},
	} {
		alts, err := parseAlternatives(c.script)
		if err != nil {
			t.Errorf("%q: %v", c.script, err)
			continue
		}
		var got []string
		for _, a := range alts {
			got = append(got, a.name+":"+a.path+":"+strconv.Itoa(a.priority))
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.script, got, c.want)
		}
	}
	for _, bad := range []struct{ script, want string }{
		{"update-alternatives --install /bin/x x \"$P\" 1", "needs a shell"},
		{"update-alternatives --install /bin/x x /bin/y high", `priority "high" is not a number`},
		{"update-alternatives --install /bin/x x /bin/y", "--install needs"},
		{"update-alternatives --install /bin/x x bin/y 1", `"bin/y" is not a clean absolute path`},
		{"update-alternatives --install /bin/x x /bin/y 1 --slave /bin/z z", "--slave needs"},
		{"update-alternatives --altdir /a --install /bin/x x /bin/y 1", "--altdir is not supported"},
		{"\n\nupdate-alternatives --install /bin/x x /bin/y 1 extra", "postinst line 3: unexpected \"extra\""},
	} {
		if _, err := parseAlternatives(bad.script); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error with %q", bad.script, err, bad.want)
		}
	}
}

func TestChooseAlternatives(t *testing.T) {
	a := alternative{link: "/bin/x", name: "x", path: "/bin/a", priority: 5}
	b := alternative{link: "/bin/x", name: "x", path: "/bin/b", priority: 5}
	c := alternative{link: "/bin/x", name: "x", path: "/bin/c", priority: 9}
	if got, _ := chooseAlternatives([]alternative{a, b}); got[0].path != "/bin/a" {
		t.Errorf("tie: chose %s, want the first installed", got[0].path)
	}
	if got, _ := chooseAlternatives([]alternative{a, c, b}); len(got) != 1 || got[0].path != "/bin/c" {
		t.Errorf("chose %+v, want /bin/c alone", got)
	}
	other := alternative{link: "/sbin/x", name: "x", path: "/bin/d", priority: 1}
	if _, err := chooseAlternatives([]alternative{a, other}); err == nil || !strings.Contains(err.Error(), "/sbin/x") {
		t.Errorf("two links for one group: %v", err)
	}
}

// FuzzParseAlternatives checks that the parser never panics and that what it returns is only ever
// clean absolute paths, each group taking one link.
func FuzzParseAlternatives(f *testing.F) {
	if script, err := os.ReadFile("testdata/iptables.postinst"); err == nil {
		f.Add(string(script))
	}
	f.Add("update-alternatives --install /a a /b 1 --slave /c c /d\\\n --slave /e e /f; update-alternatives --remove a /b")
	f.Fuzz(func(t *testing.T, script string) {
		alts, err := parseAlternatives(script)
		if err != nil {
			return
		}
		if n := strings.Count(script, "update-alternatives"); len(alts) > n {
			t.Fatalf("%d alternatives from %d calls", len(alts), n)
		}
		for _, a := range alts {
			for _, p := range append([]string{a.link, a.path}, slavePaths(a.slaves)...) {
				if !path.IsAbs(p) || path.Clean(p) != p {
					t.Fatalf("%q in %+v", p, a)
				}
			}
		}
		if _, err := chooseAlternatives(alts); err != nil && !strings.Contains(err.Error(), "elsewhere") {
			t.Fatal(err)
		}
	})
}
