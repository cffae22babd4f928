package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
)

// The node image's configuration, as deploy/docker/Dockerfile's node stage says it (test/image_test.go
// holds the two to each other).
var (
	entrypoint = []string{"/coredns"}
	// Debian's default PATH: nodecache runs iptables and ip6tables by name.
	pathEnv      = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	exposedPorts = []string{"53/tcp", "53/udp", "9253/tcp"}
)

// An arch is one Go architecture as Debian and ELF name it.
type arch struct {
	deb     string
	machine elf.Machine
}

var arches = map[string]arch{
	"amd64":   {"amd64", elf.EM_X86_64},
	"arm64":   {"arm64", elf.EM_AARCH64},
	"arm":     {"armhf", elf.EM_ARM},
	"386":     {"i386", elf.EM_386},
	"ppc64le": {"ppc64el", elf.EM_PPC64},
	"riscv64": {"riscv64", elf.EM_RISCV},
	"s390x":   {"s390x", elf.EM_S390},
}

// checkBinary makes sure bin runs in the image: built for its architecture, and static, as the
// Dockerfile builds it (CGO_ENABLED=0), so that it does not depend on the image's libc.
func checkBinary(bin string, a arch, goarch string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("-bin %s: %v", bin, err)
	}
	defer f.Close()
	if f.Machine != a.machine {
		return fmt.Errorf("-bin %s is for %v, the image for %s", bin, f.Machine, goarch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("-bin %s is dynamically linked: build it with CGO_ENABLED=0 (make image does)", bin)
		}
	}
	return nil
}

// gzipLayer compresses a layer's tar once; go-containerregistry takes gzip as it is and computes the
// digests from these bytes.
func gzipLayer(write func(io.Writer) error) (v1.Layer, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := write(zw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// binaryLayer holds bin as /coredns alone, so that a new binary changes this layer only.
func binaryLayer(bin string, epoch time.Time) (v1.Layer, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	return gzipLayer(func(w io.Writer) error {
		tw := tar.NewWriter(w)
		h := &tar.Header{Typeflag: tar.TypeReg, Name: "coredns", Mode: 0o755, Size: int64(len(data)),
			Uname: "root", Gname: "root", ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
		return tw.Close()
	})
}

// nodeImage puts the Debian userspace and the binary in an image of two layers, with the
// configuration above; userspace says what is in the first (for the image's history).
func nodeImage(t *tree, userspace, bin, goarch string, epoch time.Time) (v1.Image, error) {
	debian, err := gzipLayer(t.writeTar)
	if err != nil {
		return nil, fmt.Errorf("userspace layer: %v", err)
	}
	binary, err := binaryLayer(bin, epoch)
	if err != nil {
		return nil, fmt.Errorf("binary layer: %v", err)
	}
	created := v1.Time{Time: epoch}
	img, err := mutate.Append(empty.Image,
		mutate.Addendum{Layer: debian, History: v1.History{Created: created, CreatedBy: "deploy/image: Debian " + userspace}},
		mutate.Addendum{Layer: binary, History: v1.History{Created: created, CreatedBy: "deploy/image: /coredns from " + filepath.Base(bin)}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", goarch, created
	cf.Config.Entrypoint = entrypoint
	cf.Config.Env = []string{pathEnv}
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range exposedPorts {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	return mutate.ConfigFile(img, cf)
}

// writeArchive writes img as a docker-archive (manifest.json naming ref, the config, the layers),
// which `ctr images import` and `docker load` read; through a temporary file, so that a failed run
// leaves no half archive under out's name.
func writeArchive(out string, tag name.Tag, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %v", out, err)
	}
	return os.Rename(tmp, out)
}
