package test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerBuildIsStatic runs the Dockerfile's own build command (no container runtime is needed
// for that) and checks that the binary it makes is static, as the scratch image needs.
func TestDockerBuildIsStatic(t *testing.T) {
	dockerfile := readFile(t, "../deploy/docker/Dockerfile")
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o /out/coredns (\./cmd/coredns)$`).FindStringSubmatch(dockerfile)
	if m == nil {
		t.Fatal("no 'RUN CGO_ENABLED=0 go build ... -o /out/coredns ./cmd/coredns' in the Dockerfile")
	}
	out := filepath.Join(t.TempDir(), "coredns")
	env, rest, _ := strings.Cut(m[1], " ")
	args := append(strings.Fields(strings.ReplaceAll(rest, `"-s -w"`, "-s\x00-w")), "-o", out, m[2])
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "\x00", " ")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", m[1], err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the image's binary is dynamically linked (it has an interpreter)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the image's binary needs %v", libs)
	}
	if v, err := exec.Command(out, "-version").Output(); err != nil || !strings.Contains(string(v), "meshdns-") {
		t.Errorf("-version: %q %v", v, err)
	}
}
