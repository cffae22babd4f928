package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestNodeImage writes an archive from a small tree and a stand-in binary and reads it back as
// `ctr images import` would: the tag, two layers (the userspace, then /coredns alone), the
// configuration; and the same inputs make the same bytes.
func TestNodeImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "coredns")
	if err := os.WriteFile(bin, []byte("not really ELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("ghcr.io/meshdns/meshdns:test")
	if err != nil {
		t.Fatal(err)
	}
	write := func(out string) {
		tr := newTree(time.Unix(0, 0))
		if err := tr.addPackage("p", bytes.NewReader(mkTar(t, entry{"./usr/sbin/iptables-nft", "elf"}))); err != nil {
			t.Fatal(err)
		}
		if err := tr.finish(); err != nil {
			t.Fatal(err)
		}
		img, err := nodeImage(tr, "p 1", bin, "amd64", time.Unix(0, 0).UTC())
		if err != nil {
			t.Fatal(err)
		}
		if err := writeArchive(out, tag, img); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	write(a)
	write(b)
	if x, y := readAll(t, a), readAll(t, b); !bytes.Equal(x, y) {
		t.Errorf("two runs on the same inputs wrote different archives")
	}
	if _, err := os.Stat(a + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary archive is left: %v", err)
	}

	img, err := tarball.ImageFromPath(a, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !slices.Equal(cf.Config.Entrypoint, []string{"/coredns"}) ||
		!slices.Equal(cf.Config.Env, []string{pathEnv}) || len(cf.Config.ExposedPorts) != 3 || len(cf.History) != 2 {
		t.Errorf("config %+v", cf)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	for i, want := range [][]string{{"usr/", "usr/sbin/", "usr/sbin/iptables-nft"}, {"coredns"}} {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		if err := walkTar(rc, func(h *tar.Header, r io.Reader) error {
			names = append(names, h.Name)
			if h.Name == "coredns" && h.Mode != 0o755 {
				t.Errorf("/coredns mode %o", h.Mode)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if !slices.Equal(names, want) {
			t.Errorf("layer %d holds %q, want %q", i, names, want)
		}
	}

}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkBinary(exe, arch{"x", 0}, "nothing"); err == nil {
		t.Errorf("a binary for another machine was accepted")
	}
	if err := checkBinary(filepath.Join(t.TempDir(), "missing"), arches["amd64"], "amd64"); err == nil {
		t.Errorf("a missing binary was accepted")
	}
}
