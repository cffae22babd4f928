package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// A tree is a root file system put together from packages, as dpkg would unpack them into
// bookworm-slim: by canonical path ("usr/sbin/iptables": no leading slash, through merged /usr).
type tree struct {
	nodes map[string]*node
	// excludedDirs are directories slim leaves out unless something kept is inside them.
	excludedDirs map[string]bool
	// epoch is the time of what the tree makes itself (links, directories, the CA bundle).
	epoch time.Time
}

type node struct {
	hdr  tar.Header
	data []byte
	from string // the package that put it there, "" when the tree made it
}

func newTree(epoch time.Time) *tree {
	return &tree{nodes: map[string]*node{}, excludedDirs: map[string]bool{}, epoch: epoch}
}

// mergedUsr are bookworm's top-level links into /usr: dpkg unpacks a package's /lib/x through /lib ->
// usr/lib into /usr/lib/x, so that is where the tree keeps it.
var mergedUsr = []string{"bin", "lib", "lib64", "sbin"}

// canonical returns a tar entry's path in the tree: "" for the root, an error if it leaves the root.
func canonical(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("entry %q: a NUL in its name", name)
	}
	var parts []string
	for part := range strings.SplitSeq(name, "/") {
		switch part {
		case "", ".":
		case "..":
			return "", fmt.Errorf("entry %q leaves the root", name)
		default:
			parts = append(parts, part)
		}
	}
	if len(parts) > 0 && slices.Contains(mergedUsr, parts[0]) {
		parts = append([]string{"usr"}, parts...)
	}
	return strings.Join(parts, "/"), nil
}

// slimExcludes and slimIncludes are what the Debian images' slim variant keeps out of every package
// (debuerreotype's .slimify-excludes and .slimify-includes), as dpkg's path-exclude patterns: * matches
// across slashes.
var (
	slimExcludes = globs("/usr/share/doc/*", "/usr/share/groff/*", "/usr/share/info/*",
		"/usr/share/linda/*", "/usr/share/lintian/overrides/*", "/usr/share/locale/*", "/usr/share/man/*")
	slimIncludes = globs("/usr/share/doc/*/copyright", "/usr/share/doc/kde/HTML/C/*",
		"/usr/share/gnome/help/*/C/*", "/usr/share/locale/all_languages", "/usr/share/locale/currency/*",
		"/usr/share/locale/l10n/*", "/usr/share/locale/languages", "/usr/share/locale/locale.alias",
		"/usr/share/omf/*/*-C.emf")
)

func globs(patterns ...string) *regexp.Regexp {
	var alts []string
	for _, p := range patterns {
		alts = append(alts, strings.ReplaceAll(regexp.QuoteMeta(strings.TrimPrefix(p, "/")), `\*`, `.*`))
	}
	return regexp.MustCompile(`^(?:` + strings.Join(alts, "|") + `)$`)
}

func slimmed(p string) bool { return slimExcludes.MatchString(p) && !slimIncludes.MatchString(p) }

// addPackage adds the entries of a package's data.tar; from names it in errors.
func (t *tree) addPackage(from string, data io.Reader) error {
	return walkTar(data, func(h *tar.Header, r io.Reader) error { return t.add(from, h, r) })
}

// add puts one tar entry in the tree. Two packages may share a directory, never anything else (dpkg
// refuses that too, short of a Replaces these packages do not have).
func (t *tree) add(from string, h *tar.Header, r io.Reader) error {
	p, err := canonical(h.Name)
	if err != nil || p == "" {
		return err
	}
	if slimmed(p) {
		if h.Typeflag == tar.TypeDir {
			t.excludedDirs[p] = true
		} else {
			return nil
		}
	}
	n := &node{from: from, hdr: tar.Header{
		Typeflag: h.Typeflag, Name: p, Mode: h.Mode & 0o7777, Uid: h.Uid, Gid: h.Gid,
		Uname: h.Uname, Gname: h.Gname, ModTime: h.ModTime.Truncate(time.Second),
	}}
	switch h.Typeflag {
	case tar.TypeDir:
		if old, ok := t.nodes[p]; ok {
			if old.hdr.Typeflag == tar.TypeDir {
				return nil
			}
			return fmt.Errorf("%s: a directory in %s, a file in %s", p, from, old.from)
		}
	case tar.TypeReg:
		for k := range h.PAXRecords {
			// A sparse file would be read as all of its holes' zeros; no package has one.
			if strings.HasPrefix(k, "GNU.sparse.") {
				return fmt.Errorf("%s: a sparse file", p)
			}
		}
		if n.data, err = io.ReadAll(io.LimitReader(r, h.Size)); err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if int64(len(n.data)) != h.Size {
			return fmt.Errorf("%s: %d bytes of %d", p, len(n.data), h.Size)
		}
		n.hdr.Size = h.Size
	case tar.TypeSymlink:
		if h.Linkname == "" {
			return fmt.Errorf("%s: a symbolic link to nothing", p)
		}
		n.hdr.Linkname = h.Linkname
	case tar.TypeLink:
		target, err := canonical(h.Linkname)
		if err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if old, ok := t.nodes[target]; !ok || old.hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("%s: a hard link to %s, which is not a file before it", p, h.Linkname)
		}
		n.hdr.Linkname = target
	default:
		return fmt.Errorf("%s: tar type %q, not a file, directory or link", p, h.Typeflag)
	}
	return t.put(n)
}

// put adds n, refusing to replace anything.
func (t *tree) put(n *node) error {
	if old, ok := t.nodes[n.hdr.Name]; ok {
		return fmt.Errorf("/%s: in both %s and %s", n.hdr.Name, owner(old.from), owner(n.from))
	}
	t.nodes[n.hdr.Name] = n
	return nil
}

// owner names who put a node in the tree, for errors.
func owner(from string) string {
	if from == "" {
		return "this program"
	}
	return from
}

// made returns a node the tree makes itself, owned by root at the tree's epoch.
func (t *tree) made(typ byte, p string, mode int64) *node {
	return &node{hdr: tar.Header{Typeflag: typ, Name: p, Mode: mode, Uname: "root", Gname: "root", ModTime: t.epoch}}
}

// symlink adds the link p -> target (p absolute or not; target as written).
func (t *tree) symlink(p, target string) error {
	c, err := canonical(p)
	if err != nil {
		return err
	}
	n := t.made(tar.TypeSymlink, c, 0o777)
	n.hdr.Linkname = target
	return t.put(n)
}

// file adds a regular file the tree makes.
func (t *tree) file(p string, mode int64, data []byte) error {
	n := t.made(tar.TypeReg, p, mode)
	n.data, n.hdr.Size = data, int64(len(data))
	return t.put(n)
}

// exists says whether p (absolute, as a maintainer script writes it) is in the tree.
func (t *tree) exists(p string) bool {
	c, err := canonical(p)
	_, ok := t.nodes[c]
	return err == nil && ok
}

// mergeUsr adds bookworm's /bin -> usr/bin, /lib -> usr/lib ... links, for the directories that have
// something in them (the ELF interpreter, /lib64/ld-linux-x86-64.so.2, is reached through one).
func (t *tree) mergeUsr() error {
	for _, d := range mergedUsr {
		if n, ok := t.nodes["usr/"+d]; ok && n.hdr.Typeflag == tar.TypeDir {
			n := t.made(tar.TypeSymlink, d, 0o777)
			n.hdr.Linkname = "usr/" + d
			if err := t.put(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkAlternatives makes the links update-alternatives makes for each chosen alternative:
// /usr/sbin/iptables -> /etc/alternatives/iptables -> /usr/sbin/iptables-nft, and so for its slaves
// (a slave whose path is not there gets no link, as update-alternatives does).
func (t *tree) linkAlternatives(chosen []alternative) error {
	for _, a := range chosen {
		if !t.exists(a.path) {
			return fmt.Errorf("alternative %s: %s is not in the image", a.name, a.path)
		}
		links := append([]slave{{a.link, a.name, a.path}}, a.slaves...)
		for _, l := range links {
			if !t.exists(l.path) {
				continue
			}
			if err := t.symlink(l.link, "/etc/alternatives/"+l.name); err != nil {
				return fmt.Errorf("alternative %s: %v", a.name, err)
			}
			if err := t.symlink("/etc/alternatives/"+l.name, l.path); err != nil {
				return fmt.Errorf("alternative %s: %v", a.name, err)
			}
		}
	}
	return nil
}

// caBundle writes /etc/ssl/certs/ca-certificates.crt as ca-certificates' postinst has
// update-ca-certificates write it with every certificate enabled (debconf's default): each .crt under
// /usr/share/ca-certificates in sorted order, each ending in a newline. Go reads this file alone; the
// per-certificate hash links are OpenSSL's, which nothing in the image uses.
func (t *tree) caBundle() error {
	const dir = "usr/share/ca-certificates/"
	var bundle bytes.Buffer
	count := 0
	for _, p := range slices.Sorted(maps.Keys(t.nodes)) {
		n := t.nodes[p]
		if !strings.HasPrefix(p, dir) || !strings.HasSuffix(p, ".crt") || n.hdr.Typeflag != tar.TypeReg {
			continue
		}
		bundle.Write(n.data)
		if len(n.data) > 0 && n.data[len(n.data)-1] != '\n' {
			bundle.WriteByte('\n')
		}
		count++
	}
	if count == 0 {
		return fmt.Errorf("no certificates under /%s (is ca-certificates among the packages?)", dir)
	}
	return t.file("etc/ssl/certs/ca-certificates.crt", 0o644, bundle.Bytes())
}

// finish drops the excluded directories nothing was kept in and adds any directory a path needs but
// no package has, checking that no path goes through a link or a file.
func (t *tree) finish() error {
	// Deepest first, so that a directory whose only content is an excluded, empty one goes too.
	for _, d := range slices.Backward(slices.Sorted(maps.Keys(t.excludedDirs))) {
		prefix := d + "/"
		keep := false
		for p := range t.nodes {
			if strings.HasPrefix(p, prefix) {
				keep = true
				break
			}
		}
		if !keep {
			delete(t.nodes, d)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(t.nodes)) {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			n, ok := t.nodes[d]
			if !ok {
				t.nodes[d] = t.made(tar.TypeDir, d, 0o755)
				continue
			}
			if n.hdr.Typeflag != tar.TypeDir {
				return fmt.Errorf("/%s (from %s) is under /%s, which is not a directory", p, owner(t.nodes[p].from), d)
			}
		}
	}
	return nil
}

// paths returns the tree's paths in tar order: sorted, so a directory comes before what is in it, but
// hard links last, after the files they name.
func (t *tree) paths() []string {
	all := slices.Sorted(maps.Keys(t.nodes))
	var out, links []string
	for _, p := range all {
		if t.nodes[p].hdr.Typeflag == tar.TypeLink {
			links = append(links, p)
		} else {
			out = append(out, p)
		}
	}
	return append(out, links...)
}

// writeTar writes the tree as an image layer.
func (t *tree) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, p := range t.paths() {
		n := t.nodes[p]
		h := n.hdr
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if _, err := tw.Write(n.data); err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
	}
	return tw.Close()
}
