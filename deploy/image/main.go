// Command image writes meshdns's node-local image (deploy/docker/Dockerfile's node stage) as a
// docker-archive, without Docker: Debian bookworm's iptables with what it depends on and the CA
// bundle in one layer, the coredns binary in another. The packages come from apt (apt-get download,
// cached by version) and are unpacked as dpkg would into bookworm-slim: merged /usr, slim's path
// excludes, and the update-alternatives links of their postinst in auto mode, which makes the nft
// backend (iptables-nft, priority 20) the default over legacy (10), as in bookworm.
//
//	go run ./deploy/image -bin bin/coredns -ref ghcr.io/meshdns/meshdns:dev -o bin/meshdns-node.tar
//	ctr -n k8s.io images import bin/meshdns-node.tar
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultRef is the image's name when -ref is not given: a development build, never a release's
// tag (the DaemonSet's ghcr.io/meshdns/meshdns:0.1.0). make image passes $(IMAGE).
const DefaultRef = "ghcr.io/meshdns/meshdns:dev"

// DefaultCache is where the .debs are kept unless $MESHDNS_DEB_CACHE says otherwise (beside
// test/realstack's cache, outside the checkout).
const DefaultCache = "/var/cache/meshdns/debs"

func main() {
	bin := flag.String("bin", "bin/coredns", "the coredns binary, static (CGO_ENABLED=0)")
	ref := flag.String("ref", DefaultRef, "the image reference the archive names")
	out := flag.String("o", "bin/meshdns-node.tar", "the archive to write")
	packages := flag.String("packages", "iptables", "Debian packages installed with what they depend on (comma-separated)")
	cache := flag.String("cache", defaultCache(), "directory keeping the downloaded .debs")
	rootfs := flag.String("rootfs", "", "write the Debian userspace into this directory instead of an archive (for the Dockerfile)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "image: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := run(*bin, *ref, *out, *packages, *cache, *rootfs); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(bin, ref, out, packages, cache, rootfs string) error {
	goarch := runtime.GOARCH
	a, ok := arches[goarch]
	if !ok {
		return fmt.Errorf("no Debian architecture known for GOARCH %s", goarch)
	}
	var tag name.Tag
	if rootfs == "" {
		t, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("-ref %q: %v", ref, err)
		}
		tag = t
		if err := checkBinary(bin, a, goarch); err != nil {
			return err
		}
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("-cache: %v", err)
	}
	aptCache = filepath.Join(cache, "apt-pkgcache.bin")
	pkgs, err := userspace(a.deb, strings.Split(packages, ","))
	if err != nil {
		return err
	}
	fetched, err := fetch(cache, pkgs)
	if err != nil {
		return err
	}
	t, err := unpack(pkgs, epoch)
	if err != nil {
		return err
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, p.String())
	}
	list := strings.Join(names, ", ")
	fmt.Fprintf(os.Stderr, "image: Debian %s (%d downloaded, %d from %s)\n", list, fetched, len(pkgs)-fetched, cache)
	if rootfs != "" {
		return t.writeDir(rootfs)
	}
	img, err := nodeImage(t, list, bin, goarch, epoch)
	if err != nil {
		return err
	}
	if err := writeArchive(out, tag, img); err != nil {
		return err
	}
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s (%.1f MB, %d layers)\n", ref, id, out, float64(st.Size())/1e6, len(layers))
	return nil
}

// userspace returns the packages the image holds: roots and what they depend on, and ca-certificates
// without its dependencies (openssl and debconf run its postinst, which this program does itself).
func userspace(debArch string, roots []string) ([]*pkg, error) {
	roots = slices.DeleteFunc(roots, func(r string) bool { return strings.TrimSpace(r) == "" })
	for i, r := range roots {
		roots[i] = strings.TrimSpace(r)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("-packages names no package")
	}
	pkgs, err := closure(debArch, roots)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if p.name == "ca-certificates" {
			return pkgs, nil
		}
	}
	ca, err := candidates(debArch, []string{"ca-certificates"})
	if err != nil {
		return nil, err
	}
	return append(pkgs, ca...), nil
}

// unpack puts the packages' files in a tree and does what their postinst would have: the
// alternatives links and the CA bundle.
func unpack(pkgs []*pkg, epoch time.Time) (*tree, error) {
	t := newTree(epoch)
	var alts []alternative
	for _, p := range pkgs {
		if err := readData(p.deb, func(h *tar.Header, r io.Reader) error { return t.add(p.String(), h, r) }); err != nil {
			return nil, err
		}
		script, err := controlFile(p.deb, "postinst")
		if err != nil {
			return nil, err
		}
		found, err := parseAlternatives(string(script))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		alts = append(alts, found...)
	}
	chosen, err := chooseAlternatives(alts)
	if err != nil {
		return nil, err
	}
	if err := t.mergeUsr(); err != nil {
		return nil, err
	}
	if err := t.linkAlternatives(chosen); err != nil {
		return nil, err
	}
	if err := t.caBundle(); err != nil {
		return nil, err
	}
	return t, t.finish()
}

// sourceDateEpoch is the time of everything the program makes (the image's creation, the binary's and
// links' mtimes): $SOURCE_DATE_EPOCH, or 1970 as ko does, so that the same inputs make the same digests.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func defaultCache() string {
	if d := os.Getenv("MESHDNS_DEB_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return DefaultCache
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "meshdns", "debs")
	}
	return DefaultCache
}
