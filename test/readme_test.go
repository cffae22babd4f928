package test

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/ambient"
	"github.com/meshdns/meshdns/plugin/meshdns/source/file"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/test/need"
	"github.com/meshdns/meshdns/test/realstack"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/miekg/dns"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
)

// requireTool finds a command line tool, or skips the test; MESHDNS_REQUIRE_TOOLS=1 (set by CI, which
// installs the tools) turns the skip into a failure, so CI cannot pass by skipping.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	return need.Tool(t, name)
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

// TestPluginReadmeCorefiles starts every Corefile example of the plugin README, the real binary on
// each, with its files replaced by real ones and its control plane by a TLS ADS server that checks the
// token, and checks that it answers a mesh name.
func TestPluginReadmeCorefiles(t *testing.T) {
	readme, err := os.ReadFile("../plugin/meshdns/README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)~~~ corefile\n(.*?)~~~").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 5 {
		t.Fatalf("%d corefile examples in the plugin README, want the file, sidecar, node and VM ones", len(blocks))
	}
	const tableJSON = `{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.10.12"], "registry": "Kubernetes"}}}`
	entries, err := file.Parse("t.json", []byte(tableJSON))
	if err != nil {
		t.Fatal(err)
	}
	var (
		fileLine  = regexp.MustCompile(`(?m)^(\s*(?:file|tls|token|vip_state|mesh_config) )(\S+)`)
		ndsLine   = regexp.MustCompile(`(?m)^(\s*nds )(\S+)`)
		ambLine   = regexp.MustCompile(`(?m)^(\s*ambient )(\S+)`)
		promLine  = regexp.MustCompile(`(?m)^(\s*(?:prometheus|debug) )(\S+)`)
		serverKey = regexp.MustCompile(`(?m)^\. \{`)
	)
	kubeconfigLine := regexp.MustCompile(`(?m)^(\s*kubeconfig )(\S+)`)
	// One kube-apiserver for every example that watches Kubernetes, started here on this test's t:
	// a subtest must not skip or stop its parent. Without the stack those examples skip themselves.
	var stack *realstack.Stack
	var stackMissing error
	for _, b := range blocks {
		if kubeconfigLine.MatchString(b[1]) {
			if _, stackMissing = realstack.Binaries(); stackMissing == nil {
				stack = realstack.Start(t, realstack.Options{WithoutIstiod: true})
				if _, err := stack.CreateService("bookinfo", "reviews", "10.96.10.12"); err != nil {
					t.Fatal(err)
				}
			}
			break
		}
	}
	for i, b := range blocks {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dir := t.TempDir()
			if kubeconfigLine.MatchString(b[1]) {
				if stack == nil {
					need.Skip(t, need.Stack, stackMissing.Error())
				}
				b[1] = kubeconfigLine.ReplaceAllString(b[1], "${1}"+stack.Kubeconfig)
				t.Setenv("NODE_NAME", "node-1")
				// token_request asks for a token of kube-system's default ServiceAccount, which a
				// cluster's controller-manager would have made.
				if err := stack.EnsureNamespace("kube-system"); err != nil {
					t.Fatal(err)
				}
			}
			pki := ndstest.NewPKI(t, "istiod.istio-system.svc")
			var creds credentials.TransportCredentials // plaintext, as istiod's 15010, for an example without tls
			if strings.Contains(b[1], "tls ") {
				creds = credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pki.Server}})
			}
			srv := ndstest.New(t, creds)
			usesAmbient := ambLine.MatchString(b[1])
			srv.OnOpen = func() any {
				if usesAmbient { // istiod's workload discovery: the same Service as an Address, over delta
					svc := &ambient.Service{Name: "reviews", Namespace: "bookinfo", Hostname: "reviews.bookinfo.svc.cluster.local",
						Addresses: []ambient.NetworkAddress{{Addr: netip.MustParseAddr("10.96.10.12")}}}
					return &discovery.DeltaDiscoveryResponse{TypeUrl: ambient.TypeURL, Nonce: "1", Resources: []*discovery.Resource{{
						Name: "bookinfo/" + svc.Hostname, Version: "1", Resource: &anypb.Any{TypeUrl: ambient.TypeURL, Value: ambient.EncodeService(svc)}}}}
				}
				return &discovery.DiscoveryResponse{TypeUrl: nds.TypeURL, VersionInfo: "1", Nonce: "1",
					Resources: []*anypb.Any{{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable(entries)}}}
			}
			corefile := fileLine.ReplaceAllStringFunc(b[1], func(l string) string {
				m := fileLine.FindStringSubmatch(l)
				if m[2] == "configmap" {
					return l // mesh_config configmap: the API server's, no file
				}
				path := filepath.Join(dir, filepath.Base(m[2]))
				var data []byte
				switch strings.TrimSpace(m[1]) {
				case "file":
					data = []byte(tableJSON)
				case "tls":
					data, _ = os.ReadFile(pki.CAFile)
				case "token":
					data = []byte("readme-token\n")
				case "mesh_config":
					data = []byte("rootNamespace: istio-system\ndefaultServiceExportTo: [\"*\"]\n")
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				return m[1] + path
			})
			usesNDS := ndsLine.MatchString(corefile) || usesAmbient
			corefile = ndsLine.ReplaceAllString(corefile, "${1}"+srv.Addr)
			corefile = ambLine.ReplaceAllString(corefile, "${1}"+srv.Addr)
			corefile = promLine.ReplaceAllString(corefile, "${1}127.0.0.1:"+freePort(t))
			port := freePort(t)
			corefile = serverKey.ReplaceAllString(corefile, ".:"+port+" {")
			addr := "127.0.0.1:" + port
			startCoreDNS(t, dir, corefile, addr)
			eventually(t, 10*time.Second, "a mesh name answered", func() error {
				r := exchange(t, "udp", addr, "reviews.bookinfo.svc.cluster.local.", dns.TypeA, 0)
				if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.10.12" {
					return fmt.Errorf("%v", r)
				}
				return nil
			})
			if tokens := srv.Tokens(); usesNDS && strings.Contains(b[1], "token ") && (len(tokens) == 0 || tokens[0] != "[Bearer readme-token]") {
				t.Errorf("the control plane saw tokens %v", tokens)
			}
			if tokens := srv.Tokens(); strings.Contains(b[1], "token_request") && (len(tokens) == 0 || !strings.HasPrefix(tokens[0], "[Bearer ey")) {
				t.Errorf("token_request: the control plane saw tokens %v, want a requested JWT", tokens)
			}
		})
	}
}
