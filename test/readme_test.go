package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// requireTool finds a command line tool, or skips the test; MESHDNS_REQUIRE_TOOLS=1 (set by CI, which
// installs the tools) turns the skip into a failure, so CI cannot pass by skipping.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("MESHDNS_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is required (MESHDNS_REQUIRE_TOOLS=1) but not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	return path
}

// TestReadmeQuickStart starts Corefile.example as the README's `make run` does, with free ports and a
// local upstream, and runs every `$ dig` line of the README, comparing the output with what it shows.
func TestReadmeQuickStart(t *testing.T) {
	requireTool(t, "dig")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	corefile, err := os.ReadFile("../Corefile.example")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("..")
	up := startUpstream(t)
	port := freePort(t)
	cf := string(corefile)
	for old, repl := range map[string]string{
		":1053":                      ":" + port,
		"127.0.0.1:8181":             "127.0.0.1:" + freePort(t),
		"127.0.0.1:9153":             "127.0.0.1:" + freePort(t),
		"forward . /etc/resolv.conf": "forward . " + up.addr,
		"file example/":              "file " + root + "/example/",
	} {
		if !strings.Contains(cf, old) {
			t.Fatalf("Corefile.example no longer holds %q", old)
		}
		cf = strings.ReplaceAll(cf, old, repl)
	}
	startCoreDNS(t, t.TempDir(), cf, "127.0.0.1:"+port)

	cmds := readmeCommands(string(readme))
	if len(cmds) < 8 {
		t.Fatalf("found only %d dig lines in the README", len(cmds))
	}
	id := regexp.MustCompile(`id: \d+`)
	for _, c := range cmds {
		line := strings.Replace(c.line, "-p 1053", "-p "+port, 1)
		out, err := exec.Command("sh", "-c", line).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", c.line, err, out)
			continue
		}
		got := strings.Split(strings.TrimSpace(id.ReplaceAllString(string(out), "id: 0")), "\n")
		slices.Sort(got)
		want := slices.Sorted(slices.Values(c.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s\n got: %q\nwant: %q", c.line, got, want)
		}
	}
	if n := up.total() - up.count("startup.probe.invalid. A"); n != 0 {
		t.Errorf("README mesh names reached the upstream: %v", up.seen)
	}
}

type readmeCommand struct {
	line string
	want []string
}

// readmeCommands returns the "$ dig ..." lines of the README's console blocks with the output shown
// under each.
func readmeCommands(readme string) []readmeCommand {
	var out []readmeCommand
	inConsole := false
	for _, l := range strings.Split(readme, "\n") {
		switch {
		case strings.HasPrefix(l, "```console"):
			inConsole = true
		case strings.HasPrefix(l, "```"):
			inConsole = false
		case inConsole && strings.HasPrefix(l, "$ dig "):
			out = append(out, readmeCommand{line: strings.TrimPrefix(l, "$ ")})
		case inConsole && len(out) > 0 && l != "":
			out[len(out)-1].want = append(out[len(out)-1].want, l)
		}
	}
	return out
}

// TestPluginReadmeCorefiles starts every Corefile example of the plugin README, with its files
// replaced by a real name table, and checks that it answers a mesh name.
func TestPluginReadmeCorefiles(t *testing.T) {
	readme, err := os.ReadFile("../plugin/meshdns/README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)~~~ corefile\n(.*?)~~~").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("no corefile examples in the plugin README")
	}
	fileLine := regexp.MustCompile(`(?m)^(\s*file )(\S+)`)
	for i, b := range blocks {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dir := t.TempDir()
			paths := fileLine.FindAllStringSubmatch(b[1], -1)
			if len(paths) == 0 {
				t.Fatalf("example has no file line:\n%s", b[1])
			}
			for _, p := range paths {
				data := `{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.10.12"], "registry": "Kubernetes"}}}`
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(p[2])), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			port := freePort(t)
			corefile := fileLine.ReplaceAllStringFunc(b[1], func(l string) string {
				m := fileLine.FindStringSubmatch(l)
				return m[1] + filepath.Join(dir, filepath.Base(m[2]))
			})
			corefile = strings.Replace(corefile, ". {", ".:"+port+" {", 1)
			addr := "127.0.0.1:" + port
			startCoreDNS(t, dir, corefile, addr)
			r := exchange(t, "udp", addr, "reviews.bookinfo.svc.cluster.local.", dns.TypeA, 0)
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.10.12" {
				t.Errorf("example %d does not answer a mesh name: %v\n%s", i, r, corefile)
			}
		})
	}
}
