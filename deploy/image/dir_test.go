package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteDir(t *testing.T) {
	tr := newTree(time.Unix(0, 0))
	if err := tr.addPackage("p", bytes.NewReader(mkTar(t,
		entry{"./usr/", ""}, entry{"./usr/bin/", ""}, entry{"./usr/bin/tool", "#!/bin/true\n"},
		entry{"./usr/bin/alias -> tool", ""}, entry{"./usr/bin/copy => ./usr/bin/tool", ""}))); err != nil {
		t.Fatal(err)
	}
	// A read-only directory with something in it, and a set-uid file.
	tr.nodes["usr/bin"].hdr.Mode = 0o555
	tr.nodes["usr/bin/tool"].hdr.Mode = 0o4755
	if err := tr.mergeUsr(); err != nil {
		t.Fatal(err)
	}
	if err := tr.finish(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := tr.writeDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "usr/bin"), 0o755) })

	if data, err := os.ReadFile(filepath.Join(dir, "bin/tool")); err != nil || string(data) != "#!/bin/true\n" {
		t.Errorf("/bin/tool through /bin -> usr/bin: %q, %v", data, err)
	}
	st, err := os.Stat(filepath.Join(dir, "usr/bin/tool"))
	if err != nil || st.Mode() != 0o755|os.ModeSetuid {
		t.Errorf("tool's mode: %v, %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "usr/bin")); err != nil || st.Mode().Perm() != 0o555 {
		t.Errorf("usr/bin's mode: %v, %v", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "usr/bin/alias")); err != nil || target != "tool" {
		t.Errorf("alias -> %q, %v", target, err)
	}
	a, _ := os.Stat(filepath.Join(dir, "usr/bin/tool"))
	b, err := os.Stat(filepath.Join(dir, "usr/bin/copy"))
	if err != nil || !os.SameFile(a, b) {
		t.Errorf("copy is not a hard link of tool: %v", err)
	}

	if err := tr.writeDir(dir); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("writing into a non-empty directory: %v", err)
	}
}

func TestFileMode(t *testing.T) {
	for m, want := range map[int64]os.FileMode{
		0o644:  0o644,
		0o4755: 0o755 | os.ModeSetuid,
		0o2755: 0o755 | os.ModeSetgid,
		0o1777: 0o777 | os.ModeSticky,
	} {
		if got := fileMode(m); got != want {
			t.Errorf("fileMode(%o) = %v, want %v", m, got, want)
		}
	}
}
