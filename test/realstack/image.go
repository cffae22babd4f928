package realstack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/need"
)

// ImageFile is one entry of an image's single layer. Exactly one of Data (a regular file), Link (a
// symbolic link to Link) or Dir is meaningful; parent directories are added as needed.
type ImageFile struct {
	Name string // path in the image, without a leading slash: "bin/busybox"
	Mode int64  // permission bits; 0 means 0o644 for files, 0o755 for directories
	Data []byte
	Link string
	Dir  bool
}

// ImageConfig is the part of an image's configuration a test sets.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
}

// WriteImageArchive writes a one-layer image named ref (for example "realstack.local/busybox:1") as a
// docker-archive tarball (what `docker save` writes: the layer, the config JSON and manifest.json
// with RepoTags), which `ctr images import` reads without a registry or a daemon.
func WriteImageArchive(file, ref string, cfg ImageConfig, files []ImageFile) error {
	layer, err := layerTar(files)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	layerSum := sha256.Sum256(layer)
	layerHex := hex.EncodeToString(layerSum[:])
	env := cfg.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": cfg.Entrypoint,
			"Cmd":        cfg.Cmd,
			"Env":        env,
			"WorkingDir": cfg.WorkingDir,
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
		"history": []map[string]any{{"created_by": "realstack.WriteImageArchive"}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{ref},
		"Layers":   []string{layerHex + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range []struct {
		name string
		data []byte
	}{{layerHex + "/layer.tar", layer}, {configName, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(file, out.Bytes(), 0o644)
}

// layerTar packs files, sorted and with their parent directories, owned by root, dated 1970: the
// same files give the same layer digest.
func layerTar(files []ImageFile) ([]byte, error) {
	entries := map[string]ImageFile{}
	for _, f := range files {
		name := strings.Trim(path.Clean("/"+f.Name), "/")
		if name == "" {
			return nil, fmt.Errorf("bad file name %q", f.Name)
		}
		f.Name = name
		entries[name] = f
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = ImageFile{Name: d, Dir: true}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := entries[n]
		h := &tar.Header{Name: n, ModTime: time.Unix(0, 0), Mode: f.Mode, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BusyboxImageRef is the name BusyboxImage gives its image.
const BusyboxImageRef = "realstack.local/busybox:1"

// BusyboxFiles are the files of a busybox image: the machine's static busybox (Debian's
// busybox-static) with a link for each of its applets in /bin, /etc/passwd and /etc/group, /tmp and
// /root. It skips t when busybox is missing or not static (Debian's busybox package is dynamic).
func BusyboxFiles(t testing.TB) []ImageFile {
	t.Helper()
	bin := need.Tool(t, "busybox")
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	if f, err := elf.Open(bin); err != nil {
		t.Fatalf("busybox %s: %v", bin, err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				f.Close()
				need.Skip(t, need.Tools, bin+" is dynamically linked: install busybox-static")
			}
		}
		f.Close()
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bin, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", bin, err)
	}
	files := []ImageFile{
		{Name: "bin/busybox", Mode: 0o755, Data: data},
		{Name: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Name: "etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "tmp", Dir: true, Mode: 0o1777},
		{Name: "root", Dir: true, Mode: 0o700},
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			files = append(files, ImageFile{Name: "bin/" + applet, Link: "busybox"})
		}
	}
	return files
}

// BusyboxImage writes an image archive (BusyboxImageRef) of BusyboxFiles and returns its path.
func BusyboxImage(t testing.TB, dir string) string {
	t.Helper()
	files := BusyboxFiles(t)
	out := filepath.Join(dir, "busybox.tar")
	if err := WriteImageArchive(out, BusyboxImageRef, ImageConfig{Cmd: []string{"sh"}}, files); err != nil {
		t.Fatal(err)
	}
	return out
}
