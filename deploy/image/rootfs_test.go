package main

import (
	"archive/tar"
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// entry is one tar entry of a test package: a directory ends in "/", a symlink is "name -> target",
// a hard link "name => target", anything else a file with data as content.
type entry struct{ name, data string }

func mkTar(t testing.TB, entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Uname: "root", Gname: "root", ModTime: time.Unix(1700000000, 0)}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case strings.Contains(e.name, " -> "):
			h.Typeflag = tar.TypeSymlink
			h.Name, h.Linkname, _ = strings.Cut(e.name, " -> ")
		case strings.Contains(e.name, " => "):
			h.Typeflag = tar.TypeLink
			h.Name, h.Linkname, _ = strings.Cut(e.name, " => ")
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"./":                               "",
		".":                                "",
		"./usr/sbin/iptables":              "usr/sbin/iptables",
		"/etc//ssl/./certs/":               "etc/ssl/certs",
		"./lib/x86_64-linux-gnu/libc.so.6": "usr/lib/x86_64-linux-gnu/libc.so.6",
		"./lib64/":                         "usr/lib64",
		"./sbin/ldconfig":                  "usr/sbin/ldconfig",
		"./libexec/x":                      "libexec/x",
		"./usr/lib/x":                      "usr/lib/x",
	} {
		if got, err := canonical(in); err != nil || got != want {
			t.Errorf("canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"../etc/passwd", "./usr/../../x", "a\x00b"} {
		if got, err := canonical(bad); err == nil {
			t.Errorf("canonical(%q) = %q, want an error", bad, got)
		}
	}
}

// libc is a package laid out as bookworm's libc6 is: /lib and /lib64 not yet under /usr.
var libc = []entry{
	{"./", ""}, {"./lib/", ""}, {"./lib/x86_64-linux-gnu/", ""},
	{"./lib/x86_64-linux-gnu/libc.so.6", "libc"}, {"./lib64/", ""},
	{"./lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", ""},
	{"./usr/", ""}, {"./usr/share/", ""}, {"./usr/share/doc/", ""}, {"./usr/share/doc/libc6/", ""},
	{"./usr/share/doc/libc6/copyright", "GPL"}, {"./usr/share/doc/libc6/changelog.gz", "..."},
	{"./usr/share/doc/libc6/examples/", ""}, {"./usr/share/doc/libc6/examples/a.c", "..."},
	{"./usr/share/man/", ""}, {"./usr/share/man/man8/", ""}, {"./usr/share/man/man8/ld.so.8.gz", "..."},
	{"./usr/share/locale/", ""}, {"./usr/share/locale/locale.alias", "C"},
}

func TestTreeUnpacksAsSlimDpkg(t *testing.T) {
	tr := newTree(time.Unix(0, 0))
	if err := tr.addPackage("libc6 2.36", bytes.NewReader(mkTar(t, libc...))); err != nil {
		t.Fatal(err)
	}
	other := mkTar(t, entry{"./usr/", ""}, entry{"./usr/lib/", ""}, entry{"./usr/lib/x86_64-linux-gnu/", ""},
		entry{"./usr/lib/x86_64-linux-gnu/libmnl.so.0.2.0", "mnl"},
		entry{"./usr/lib/x86_64-linux-gnu/libmnl.so.0 => ./usr/lib/x86_64-linux-gnu/libmnl.so.0.2.0", ""})
	if err := tr.addPackage("libmnl0 1.0", bytes.NewReader(other)); err != nil {
		t.Fatal(err)
	}
	if err := tr.mergeUsr(); err != nil {
		t.Fatal(err)
	}
	if err := tr.finish(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"lib", "lib64", "usr", "usr/lib", "usr/lib/x86_64-linux-gnu",
		"usr/lib/x86_64-linux-gnu/libc.so.6",
		"usr/lib/x86_64-linux-gnu/libmnl.so.0.2.0",
		"usr/lib64", "usr/lib64/ld-linux-x86-64.so.2",
		"usr/share", "usr/share/doc", "usr/share/doc/libc6", "usr/share/doc/libc6/copyright",
		"usr/share/locale", "usr/share/locale/locale.alias", "usr/share/man",
		"usr/lib/x86_64-linux-gnu/libmnl.so.0", // a hard link: after its file
	}
	if got := tr.paths(); !slices.Equal(got, want) {
		t.Errorf("paths\n got %q\nwant %q", got, want)
	}
	if n := tr.nodes["lib"]; n.hdr.Typeflag != tar.TypeSymlink || n.hdr.Linkname != "usr/lib" {
		t.Errorf("/lib is %+v, want a link to usr/lib", n.hdr)
	}
	if n := tr.nodes["usr/lib/x86_64-linux-gnu/libmnl.so.0"]; n.hdr.Typeflag != tar.TypeLink || n.hdr.Linkname != "usr/lib/x86_64-linux-gnu/libmnl.so.0.2.0" {
		t.Errorf("hard link: %+v", n.hdr)
	}
	if n := tr.nodes["usr/lib/x86_64-linux-gnu/libc.so.6"]; string(n.data) != "libc" || n.from != "libc6 2.36" {
		t.Errorf("libc.so.6: %q from %q", n.data, n.from)
	}

	// Written out and read back, the layer holds the same, directories before their content.
	var layer bytes.Buffer
	if err := tr.writeTar(&layer); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := walkTar(&layer, func(h *tar.Header, r io.Reader) error {
		names = append(names, strings.TrimSuffix(h.Name, "/"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, want) {
		t.Errorf("layer\n got %q\nwant %q", names, want)
	}
}

func TestTreeRefuses(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"one file from two packages", []entry{{"./usr/bin/x", "a"}, {"./usr/bin/x", "b"}}, "/usr/bin/x: in both"},
		{"a file through merged /usr", []entry{{"./bin/sh", "a"}, {"./usr/bin/sh", "b"}}, "/usr/bin/sh: in both"},
		{"a directory over a file", []entry{{"./usr/x", "a"}, {"./usr/x/", ""}}, "usr/x: a directory in"},
		{"a hard link to nothing", []entry{{"./usr/a => ./usr/b", ""}}, "not a file before it"},
		{"a path out of the root", []entry{{"./../etc/passwd", "x"}}, "leaves the root"},
		{"a link to nothing", []entry{{"./usr/a -> ", ""}}, "a symbolic link to nothing"},
	} {
		tr := newTree(time.Unix(0, 0))
		var err error
		for i, e := range c.entries {
			if err = tr.addPackage("pkg"+string(rune('a'+i)), bytes.NewReader(mkTar(t, e))); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Devmajor: 1, Devminor: 3})
	_ = tw.Close()
	if err := newTree(time.Unix(0, 0)).addPackage("dev", &buf); err == nil || !strings.Contains(err.Error(), "not a file, directory or link") {
		t.Errorf("a device: %v", err)
	}

	// A path under a link is dpkg following it, which the tree does not do.
	tr := newTree(time.Unix(0, 0))
	if err := tr.addPackage("a", bytes.NewReader(mkTar(t, entry{"./usr/lib/x -> y", ""}, entry{"./usr/lib/x/z", "z"}))); err != nil {
		t.Fatal(err)
	}
	if err := tr.finish(); err == nil || !strings.Contains(err.Error(), "/usr/lib/x/z (from a) is under /usr/lib/x, which is not a directory") {
		t.Errorf("a file under a link: %v", err)
	}
}

func TestLinkAlternatives(t *testing.T) {
	tr := newTree(time.Unix(0, 0))
	if err := tr.addPackage("iptables", bytes.NewReader(mkTar(t,
		entry{"./usr/sbin/xtables-nft-multi", "elf"},
		entry{"./usr/sbin/iptables-nft -> xtables-nft-multi", ""},
		entry{"./usr/sbin/iptables-nft-save -> xtables-nft-multi", ""}))); err != nil {
		t.Fatal(err)
	}
	alt := alternative{link: "/usr/sbin/iptables", name: "iptables", path: "/usr/sbin/iptables-nft", priority: 20, slaves: []slave{
		{"/usr/sbin/iptables-save", "iptables-save", "/usr/sbin/iptables-nft-save"},
		{"/usr/sbin/iptables-restore", "iptables-restore", "/usr/sbin/iptables-nft-restore"}, // not shipped
	}}
	if err := tr.linkAlternatives([]alternative{alt}); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for p, n := range tr.nodes {
		if n.hdr.Typeflag == tar.TypeSymlink && n.from == "" {
			links[p] = n.hdr.Linkname
		}
	}
	want := map[string]string{
		"usr/sbin/iptables":              "/etc/alternatives/iptables",
		"etc/alternatives/iptables":      "/usr/sbin/iptables-nft",
		"usr/sbin/iptables-save":         "/etc/alternatives/iptables-save",
		"etc/alternatives/iptables-save": "/usr/sbin/iptables-nft-save",
	}
	if len(links) != len(want) {
		t.Errorf("links %q, want %q", links, want)
	}
	for p, target := range want {
		if links[p] != target {
			t.Errorf("%s -> %q, want %q", p, links[p], target)
		}
	}
	missing := alternative{link: "/usr/sbin/ip6tables", name: "ip6tables", path: "/usr/sbin/ip6tables-nft"}
	if err := tr.linkAlternatives([]alternative{missing}); err == nil || !strings.Contains(err.Error(), "/usr/sbin/ip6tables-nft is not in the image") {
		t.Errorf("an alternative whose path is missing: %v", err)
	}
}

func TestCABundle(t *testing.T) {
	tr := newTree(time.Unix(0, 0))
	if err := tr.caBundle(); err == nil || !strings.Contains(err.Error(), "no certificates") {
		t.Errorf("no certificates: %v", err)
	}
	if err := tr.addPackage("ca-certificates", bytes.NewReader(mkTar(t,
		entry{"./usr/share/ca-certificates/mozilla/B.crt", "B\n"},
		entry{"./usr/share/ca-certificates/mozilla/A_b.crt", "A"}, // no final newline: one is added
		entry{"./usr/share/ca-certificates/mozilla/README", "not a certificate"},
		entry{"./usr/share/ca-certificates/cacert.org/C.crt", "C\n"}))); err != nil {
		t.Fatal(err)
	}
	if err := tr.caBundle(); err != nil {
		t.Fatal(err)
	}
	n := tr.nodes["etc/ssl/certs/ca-certificates.crt"]
	if n == nil || string(n.data) != "C\nA\nB\n" || n.hdr.Mode != 0o644 {
		t.Errorf("bundle %+v", n)
	}
}

// FuzzAddPackage feeds the tree any tar: it must never panic, every path it keeps must be canonical
// (inside the root, through merged /usr), and the layer it writes must read back with the same paths.
func FuzzAddPackage(f *testing.F) {
	f.Add(mkTar(f, libc...))
	f.Add(mkTar(f, entry{"./bin/a => ./usr/bin/a", ""}, entry{"../x", ""}))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := newTree(time.Unix(0, 0))
		if err := tr.addPackage("fuzz", bytes.NewReader(data)); err != nil {
			return
		}
		if err := tr.finish(); err != nil {
			return
		}
		for _, p := range tr.paths() {
			if c, err := canonical(p); err != nil || c != p || p == "" {
				t.Fatalf("kept %q (canonical %q, %v)", p, c, err)
			}
			first, _, _ := strings.Cut(p, "/")
			if slices.Contains(mergedUsr, first) {
				t.Fatalf("kept %q outside /usr", p)
			}
		}
		var layer bytes.Buffer
		if err := tr.writeTar(&layer); err != nil {
			t.Fatal(err)
		}
		var names []string
		if err := walkTar(&layer, func(h *tar.Header, r io.Reader) error {
			names = append(names, strings.TrimSuffix(h.Name, "/"))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names, tr.paths()) {
			t.Fatalf("layer %q, tree %q", names, tr.paths())
		}
	})
}
