package test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/meshdns/meshdns/test/need"
)

const imageRef = "ghcr.io/meshdns/meshdns:test"

// TestImage builds the node image archive as make image does, reads it back with
// go-containerregistry, checks its configuration against the Dockerfile's node stage and what each
// layer holds, then runs from its root file system (in a chroot) what the node role runs: the binary,
// iptables and ip6tables, with every library bound at start, and nodecache's kind of rules in a
// network namespace of their own. With containerd installed, it also imports the archive into a
// containerd of its own and runs the binary in a container.
func TestImage(t *testing.T) {
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		requireTool(t, tool)
	}
	if policy, _ := exec.Command("apt-cache", "policy", "iptables").Output(); !regexp.MustCompile(`Candidate: \d`).Match(policy) {
		need.Skip(t, need.Tools, "apt has no list with iptables in it (apt-get update)")
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "meshdns-node.tar")
	build := exec.Command("go", "run", "./deploy/image", "-bin", staticBinary(t), "-ref", imageRef, "-o", archive)
	build.Dir = ".."
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./deploy/image: %v\n%s", err, out)
	}
	t.Logf("%s", out)

	tag, err := name.NewTag(imageRef)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("reading the archive back: %v", err)
	}
	checkImageConfig(t, img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want 2: the Debian userspace, then the binary", len(layers))
	}
	userspace := layerEntries(t, layers[0])
	for _, want := range []struct{ path, link string }{
		{"usr/sbin/iptables", "/etc/alternatives/iptables"},
		{"usr/sbin/ip6tables", "/etc/alternatives/ip6tables"},
		// bookworm's default: nft, not legacy.
		{"etc/alternatives/iptables", "/usr/sbin/iptables-nft"},
		{"etc/alternatives/ip6tables", "/usr/sbin/ip6tables-nft"},
		{"usr/sbin/iptables-nft", "xtables-nft-multi"},
		{"usr/sbin/xtables-nft-multi", ""},
		{"etc/ssl/certs/ca-certificates.crt", ""},
		{"lib64", "usr/lib64"},
	} {
		h, ok := userspace[want.path]
		if !ok {
			t.Errorf("the userspace layer has no /%s", want.path)
		} else if h.Linkname != want.link {
			t.Errorf("/%s -> %q, want %q", want.path, h.Linkname, want.link)
		}
	}
	for p, h := range userspace {
		doc := strings.HasPrefix(p, "usr/share/doc/") && strings.Count(p, "/") > 3 && !strings.HasSuffix(p, "/copyright")
		if h.Typeflag != tar.TypeDir && (doc || strings.HasPrefix(p, "usr/share/man/")) {
			t.Errorf("/%s is in the layer: slim leaves it out", p)
		}
	}
	binary := layerEntries(t, layers[1])
	if h, ok := binary["coredns"]; len(binary) != 1 || !ok || h.Mode&0o111 == 0 {
		t.Errorf("the binary layer holds %v, want /coredns alone, executable", slices.Sorted(maps.Keys(binary)))
	}

	rootfs := filepath.Join(dir, "rootfs")
	extract(t, img, rootfs)
	checkCABundle(t, filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt"))

	t.Run("dockerfile", func(t *testing.T) {
		// The Dockerfile's node stage unpacks the same userspace with -rootfs: it must be the image's,
		// file for file.
		dockerfile := readFile(t, "../deploy/docker/Dockerfile")
		m := regexp.MustCompile(`(?m)^RUN .*go run (\./deploy/image) -rootfs /rootfs$`).FindStringSubmatch(dockerfile)
		if m == nil {
			t.Fatal("no 'RUN ... go run ./deploy/image -rootfs /rootfs' in the Dockerfile")
		}
		dockerRoot := filepath.Join(t.TempDir(), "rootfs")
		cmd := exec.Command("go", "run", m[1], "-rootfs", dockerRoot)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go run %s -rootfs: %v\n%s", m[1], err, out)
		}
		image, docker := describeTree(t, rootfs), describeTree(t, dockerRoot)
		delete(image, "coredns")
		for _, p := range slices.Sorted(maps.Keys(image)) {
			if docker[p] != image[p] {
				t.Errorf("/%s: %s in the image, %q from the Dockerfile's step", p, image[p], docker[p])
			}
		}
		for p := range docker {
			if _, ok := image[p]; !ok {
				t.Errorf("/%s from the Dockerfile's step is not in the image", p)
			}
		}
	})

	t.Run("chroot", func(t *testing.T) {
		need.Root(t, "chroot into the image's root file system")
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"/coredns", "-version"}, "meshdns-"},
			{[]string{"/usr/sbin/iptables", "-V"}, "iptables v1.8.9 (nf_tables)"},
			{[]string{"/usr/sbin/ip6tables", "-V"}, "ip6tables v1.8.9 (nf_tables)"},
			{[]string{"/usr/sbin/iptables-legacy", "-V"}, "(legacy)"},
		} {
			cmd := exec.Command(c.args[0], c.args[1:]...)
			// LD_BIND_NOW: a symbol missing from any library fails at start, not when first called.
			cmd.Env = []string{imagePath(t, img), "LD_BIND_NOW=1"}
			cmd.Dir = "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), c.want) {
				t.Errorf("in the image, %s: %v\n%s\nwant %q", strings.Join(c.args, " "), err, out, c.want)
			}
		}
	})

	t.Run("rules", func(t *testing.T) {
		need.Root(t, "iptables in a network namespace")
		// nodecache's rules, by name through PATH as nodecache runs them; in a network namespace of
		// their own, so the host's are not touched. This loads the xtables extensions and talks
		// nf_tables, which -V does not.
		script := `set -e
chroot "$1" iptables -w -t raw -A PREROUTING -p udp -d 169.254.20.10 --dport 53 -j NOTRACK
chroot "$1" iptables -w -t filter -A INPUT -p tcp -d 169.254.20.10 --dport 53 -j ACCEPT
chroot "$1" ip6tables -w -t raw -A OUTPUT -p udp -s fd00::10 --sport 53 -j NOTRACK
chroot "$1" iptables-save
chroot "$1" ip6tables-save`
		cmd := exec.Command("sh", "-c", script, "sh", rootfs)
		cmd.Env = []string{imagePath(t, img)}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{
			"-A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -j NOTRACK",
			"-A INPUT -d 169.254.20.10/32 -p tcp -m tcp --dport 53 -j ACCEPT",
			"-A OUTPUT -s fd00::10/128 -p udp -m udp --sport 53 -j NOTRACK",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("iptables-save has no %q:\n%s", want, out)
			}
		}
	})

	t.Run("containerd", func(t *testing.T) {
		// The archive is for containerd: without one (apt-get install containerd runc) this skips
		// and says so in make test's summary.
		for _, tool := range []string{"containerd", "ctr", "runc"} {
			need.Tool(t, tool)
		}
		need.Root(t, "containerd")
		sock := startContainerd(t)
		ctr := func(args ...string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		ctr("images", "import", archive)
		if ls := ctr("images", "ls", "-q"); !slices.Contains(strings.Fields(ls), imageRef) {
			t.Fatalf("ctr images ls: no %s in\n%s", imageRef, ls)
		}
		if out := ctr("run", "--rm", imageRef, "meshdns-image-test", "/coredns", "-version"); !strings.Contains(out, "meshdns-") {
			t.Errorf("/coredns -version in a container: %q", out)
		}
	})
}

// staticBinary returns a coredns binary built as make image builds it: the test run's own when that
// is static, else one built here with CGO_ENABLED=0.
func staticBinary(t *testing.T) string {
	t.Helper()
	if f, err := elf.Open(binary); err == nil {
		static := !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		f.Close()
		if static {
			return binary
		}
	}
	out := filepath.Join(t.TempDir(), "coredns")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/coredns")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/coredns: %v\n%s", err, b)
	}
	return out
}

// checkImageConfig holds the image's configuration to the Dockerfile's node stage: the same
// entrypoint, PATH and ports, for linux on this machine's architecture.
func checkImageConfig(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	dockerfile := readFile(t, "../deploy/docker/Dockerfile")
	_, node, ok := strings.Cut(dockerfile, "\nFROM scratch AS node\n")
	if !ok {
		t.Fatal("no 'FROM scratch AS node' stage in the Dockerfile")
	}
	node, _, _ = strings.Cut(node, "\nFROM ")
	field := func(instr string) string {
		m := regexp.MustCompile(`(?m)^` + instr + ` (.*)$`).FindStringSubmatch(node)
		if m == nil {
			t.Fatalf("no %s in the Dockerfile's node stage", instr)
		}
		return m[1]
	}
	var entrypoint []string
	if err := json.Unmarshal([]byte(field("ENTRYPOINT")), &entrypoint); err != nil {
		t.Fatalf("the node stage's ENTRYPOINT: %v", err)
	}
	if !slices.Equal(cf.Config.Entrypoint, entrypoint) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, the Dockerfile says %q", cf.Config.Entrypoint, cf.Config.Cmd, entrypoint)
	}
	if env := field("ENV"); !slices.Equal(cf.Config.Env, []string{env}) {
		t.Errorf("env %q, the Dockerfile says %q", cf.Config.Env, env)
	}
	var ports []string
	for _, p := range strings.Fields(field("EXPOSE")) {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		ports = append(ports, p)
	}
	if got := slices.Sorted(maps.Keys(cf.Config.ExposedPorts)); !slices.Equal(got, slices.Sorted(slices.Values(ports))) {
		t.Errorf("exposed ports %q, the Dockerfile says %q", got, ports)
	}
}

func imagePath(t *testing.T, img v1.Image) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range cf.Config.Env {
		if strings.HasPrefix(e, "PATH=") {
			return e
		}
	}
	t.Fatal("the image sets no PATH")
	return ""
}

// layerEntries returns a layer's tar headers by path.
func layerEntries(t *testing.T, l v1.Layer) map[string]*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = h
	}
}

// extract unpacks the image's file system (its layers flattened) into dir, as a runtime would.
// Through os.Root, so that no entry can reach outside dir, even through the image's absolute links.
func extract(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "/"))
		mode := os.FileMode(h.Mode & 0o777)
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(name, 0o755)
			if err == nil {
				// Writable by its owner, so that what comes after can go in (root aside).
				err = root.Chmod(name, mode|0o200)
			}
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = root.WriteFile(name, data, mode)
			}
		case tar.TypeSymlink:
			err = root.Symlink(h.Linkname, name)
		case tar.TypeLink:
			err = root.Link(filepath.Clean(strings.TrimPrefix(h.Linkname, "/")), name)
		default:
			err = fmt.Errorf("tar type %q", h.Typeflag)
		}
		if err != nil {
			t.Fatalf("extracting %s: %v", h.Name, err)
		}
	}
}

// describeTree returns what is at each path under dir: type, permissions and a link's target or a
// file's SHA256.
func describeTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" sha256:%x", sha256.Sum256(data))
		}
		out[filepath.ToSlash(rel)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkCABundle parses the bundle the way Go's crypto/x509 would find it: every block a certificate,
// and many of them.
func checkCABundle(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rest := data; ; n++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				t.Errorf("the CA bundle has %d bytes that are not PEM after %d certificates", len(rest), n)
			}
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Errorf("CA bundle certificate %d: %v", n+1, err)
		}
	}
	if n < 100 {
		t.Errorf("the CA bundle holds %d certificates; Debian's has over 100", n)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(data) {
		t.Error("crypto/x509 takes no certificate from the CA bundle")
	}
}

// startContainerd runs a containerd of the test's own (its root, state and socket in a temporary
// directory, no CRI) until the test ends, and returns its socket.
func startContainerd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("containerd:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := exec.Command("ctr", "--address", sock, "version").Run(); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s:\n%s", sock, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
