package main

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// writeDir unpacks the tree into dir, for the Dockerfile to copy into its image: the same userspace
// without an archive. dir must be empty or absent, so that nothing there redirects a path.
func (t *tree) writeDir(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("-rootfs %s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root := os.Geteuid() == 0
	var dirs []string
	for _, p := range t.paths() {
		n := t.nodes[p]
		full := filepath.Join(dir, filepath.FromSlash(p))
		var err error
		switch n.hdr.Typeflag {
		case tar.TypeDir:
			// Writable until everything is in; its own mode comes last.
			err = os.Mkdir(full, 0o700)
			dirs = append(dirs, p)
		case tar.TypeReg:
			err = os.WriteFile(full, n.data, 0o600)
		case tar.TypeSymlink:
			err = os.Symlink(n.hdr.Linkname, full)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, filepath.FromSlash(n.hdr.Linkname)), full)
		}
		// A hard link is its target's inode, already owned; chown would clear its set-id bits.
		if err == nil && root && n.hdr.Typeflag != tar.TypeLink {
			err = os.Lchown(full, n.hdr.Uid, n.hdr.Gid)
		}
		// After chown, which clears set-id bits.
		if err == nil && n.hdr.Typeflag == tar.TypeReg {
			err = os.Chmod(full, fileMode(n.hdr.Mode))
		}
		if err == nil && n.hdr.Typeflag == tar.TypeReg {
			err = os.Chtimes(full, n.hdr.ModTime, n.hdr.ModTime)
		}
		if err != nil {
			return err
		}
	}
	for _, p := range slices.Backward(dirs) {
		n, full := t.nodes[p], filepath.Join(dir, filepath.FromSlash(p))
		if err := os.Chmod(full, fileMode(n.hdr.Mode)); err != nil {
			return err
		}
		if err := os.Chtimes(full, n.hdr.ModTime, n.hdr.ModTime); err != nil {
			return err
		}
	}
	return nil
}

// fileMode converts a tar header's Unix mode to Go's, set-id and sticky bits included.
func fileMode(m int64) os.FileMode {
	mode := os.FileMode(m & 0o777)
	for bit, fm := range map[int64]os.FileMode{0o4000: os.ModeSetuid, 0o2000: os.ModeSetgid, 0o1000: os.ModeSticky} {
		if m&bit != 0 {
			mode |= fm
		}
	}
	return mode
}
