package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// A .deb is read through dpkg-deb, Debian's own reader, which knows every compression a package may
// use; what comes out is a plain tar.

// readData calls fn for each entry of deb's data.tar, the files it installs, in archive order.
func readData(deb string, fn func(*tar.Header, io.Reader) error) error {
	return readTar(deb, "--fsys-tarfile", fn)
}

// controlFile returns one file of deb's control.tar (postinst, ...), nil if deb has none.
func controlFile(deb, name string) ([]byte, error) {
	var found []byte
	err := readTar(deb, "--ctrl-tarfile", func(h *tar.Header, r io.Reader) error {
		if strings.TrimPrefix(h.Name, "./") != name || h.Typeflag != tar.TypeReg {
			return nil
		}
		var err error
		found, err = io.ReadAll(r)
		return err
	})
	return found, err
}

func readTar(deb, mode string, fn func(*tar.Header, io.Reader) error) error {
	var stderr bytes.Buffer
	cmd := exec.Command("dpkg-deb", mode, deb)
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb %s %s: %v", mode, deb, err)
	}
	walkErr := walkTar(out, fn)
	// Drain what fn left unread so that dpkg-deb ends by itself, not by a broken pipe.
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb %s %s: %v: %s", mode, deb, err, strings.TrimSpace(stderr.String()))
	}
	if walkErr != nil {
		return fmt.Errorf("%s: %v", deb, walkErr)
	}
	return nil
}

// walkTar calls fn for each entry of the tar stream r.
func walkTar(r io.Reader, fn func(*tar.Header, io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}
