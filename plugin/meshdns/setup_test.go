package meshdns

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func TestSetup(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"table": {"a.ns.svc.cluster.local": {"ips": ["10.0.0.1"], "registry": "Kubernetes"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{\"table\": {\n  \"a.b\": {\"ips\": [\"10.0.0.300\"]}}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		input   string
		wantErr string // substrings of the error, all of them; "" for success
	}{
		{"minimal", "meshdns {\nfile " + good + "\n}", ""},
		{"everything", "meshdns cluster.local example.com {\nfile " + good + " 10s\nnamespace default\ncluster_domain cluster.local\nsearch default.svc.cluster.local svc.cluster.local\nttl 60\nfallthrough example.com\n}", ""},
		{"two files", "meshdns {\nfile " + good + "\nfile " + good + " 0\n}", ""},
		{"no source", "meshdns {\nnamespace default\n}", "Testfile:1 - Error during parsing: no name table source"},
		{"unknown property", "meshdns {\nfile " + good + "\nfoo bar\n}", "Testfile:3 - Error during parsing: unknown property 'foo'"},
		{"file without path", "meshdns {\nfile\n}", "Testfile:2 - Error during parsing: file: want PATH [RELOAD], got 0 arguments"},
		{"file extra arg", "meshdns {\nfile " + good + " 5s extra\n}", "Testfile:2 - Error during parsing: file: want PATH [RELOAD], got 3 arguments"},
		{"bad reload", "meshdns {\nfile " + good + " often\n}", `Testfile:2 - Error during parsing: file: RELOAD "often"`},
		{"negative reload", "meshdns {\nfile " + good + " -5s\n}", `Testfile:2 - Error during parsing: file: RELOAD "-5s"`},
		{"missing file", "meshdns {\n\nfile " + filepath.Join(dir, "nope.yaml") + "\n}", "Testfile:3 - Error during parsing: file " + filepath.Join(dir, "nope.yaml") + ": stat " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{"bad file", "meshdns {\nfile " + bad + "\n}", `Testfile:2 - Error during parsing: file ` + bad + `: line 2, column 8: host "a.b": ips[0]: "10.0.0.300" is not an IP address`},
		{"namespace missing", "meshdns {\nfile " + good + "\nnamespace\n}", "Testfile:3 - Error during parsing: namespace: want one namespace, got 0 arguments"},
		{"namespace two", "meshdns {\nfile " + good + "\nnamespace a b\n}", "Testfile:3 - Error during parsing: namespace: want one namespace, got 2 arguments"},
		{"namespace invalid", "meshdns {\nfile " + good + "\nnamespace a.b\n}", `namespace: "a.b" is not a valid namespace name`},
		{"namespace twice", "meshdns {\nfile " + good + "\nnamespace a\nnamespace b\n}", "Testfile:4 - Error during parsing: property 'namespace' given twice"},
		{"cluster_domain missing", "meshdns {\nfile " + good + "\ncluster_domain\n}", "Testfile:3 - Error during parsing: cluster_domain: want one domain"},
		{"cluster_domain invalid", "meshdns {\nfile " + good + "\ncluster_domain a..b\n}", "cluster_domain:"},
		{"search empty", "meshdns {\nfile " + good + "\nsearch\n}", "Testfile:3 - Error during parsing: search: want at least one domain"},
		{"search invalid", "meshdns {\nfile " + good + "\nsearch ok.example *bad\n}", "Testfile:3 - Error during parsing: search:"},
		{"ttl missing", "meshdns {\nfile " + good + "\nttl\n}", "Testfile:3 - Error during parsing: ttl: want one number of seconds, got 0 arguments"},
		{"ttl not a number", "meshdns {\nfile " + good + "\nttl soon\n}", `Testfile:3 - Error during parsing: ttl: "soon" is not a number of seconds from 0 to 86400`},
		{"ttl negative", "meshdns {\nfile " + good + "\nttl -1\n}", `ttl: "-1" is not a number of seconds`},
		{"ttl too big", "meshdns {\nfile " + good + "\nttl 86401\n}", `ttl: "86401" is not a number of seconds`},
		{"kubernetes outside a cluster", "meshdns {\nkubernetes\n}", "Testfile:1 - Error during parsing: kubernetes in-cluster: no kubeconfig given and not in a cluster"},
		{"kubernetes bad option", "meshdns {\nkubernetes {\nclients a b\n}\n}", "Testfile:3 - Error during parsing: kubernetes: clients: want [NODE], got 2 arguments"},
		{"nds per namespace without clients", "meshdns {\nnds 127.0.0.1:15010 {\nnamespaces clients\n}\n}", "Testfile:1 - Error during parsing: nds 127.0.0.1:15010: namespaces clients: no source in this block knows the clients' namespaces"},
		{"nds per namespace, kubernetes without clients", "meshdns {\nnds 127.0.0.1:15010 {\nnamespaces clients\n}\nkubernetes {\nkubeconfig " + kubeconfig + "\n}\n}", "namespaces clients: no source in this block knows"},
		{"nds per namespace, kubernetes clients", "meshdns {\nnds 127.0.0.1:15010 {\nnamespaces clients\n}\nkubernetes {\nkubeconfig " + kubeconfig + "\nclients node-1\n}\n}", ""},
		{"nds token_request without kubernetes", "meshdns {\nnds 127.0.0.1:15010 {\nnamespaces a\ntoken_request\n}\n}", "nds 127.0.0.1:15010: token_request: no kubernetes source in this block"},
		{"nds token_request", "meshdns {\nnds 127.0.0.1:15010 {\nnamespaces clients\ntoken_request istio-dns\n}\nkubernetes {\nkubeconfig " + kubeconfig + "\nclients_only node-1\n}\n}", ""},
		{"nds fixed namespaces", "meshdns {\nnds 127.0.0.1:15010 {\nnamespaces a b\n}\n}", ""},
		{"ambient", "meshdns {\nambient 127.0.0.1:15010 {\nnetwork n1\n}\nnamespace default\n}", ""},
		{"ambient bad option", "meshdns {\nambient 127.0.0.1:15010 {\nnetwork\n}\n}", "Testfile:3 - Error during parsing: ambient: network: want NETWORK, got 0 arguments"},
		{"ambient twice", "meshdns {\nambient 127.0.0.1:15010\nambient 127.0.0.2:15010\n}", ""},
		{"batch_udp off", "meshdns {\nfile " + good + "\nbatch_udp off\n}", ""},
		{"batch_udp missing", "meshdns {\nfile " + good + "\nbatch_udp\n}", `Testfile:3 - Error during parsing: batch_udp: want on or off, got ""`},
		{"batch_udp bad", "meshdns {\nfile " + good + "\nbatch_udp fast\n}", `Testfile:3 - Error during parsing: batch_udp: want on or off, got "fast"`},
		{"twice in a block", "meshdns {\nfile " + good + "\n}\nmeshdns {\nfile " + good + "\n}", "can only be used once per Server Block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			c.ServerBlockKeys = []string{"."}
			err := setup(c)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "plugin/meshdns: ") {
				t.Errorf("error %q does not name the plugin", err)
			}
		})
	}
}

// TestAmbientGivesClientViews: an ambient source knows client addresses, so the block asks it.
func TestAmbientGivesClientViews(t *testing.T) {
	c := caddy.NewTestController("dns", "meshdns {\nambient 127.0.0.1:15010\nnamespace shop\n}")
	c.ServerBlockKeys = []string{"."}
	m, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.clients) != 1 || len(m.store.sources) != 1 || m.store.sources[0].Kind() != "ambient" {
		t.Errorf("clients %v, sources %v", m.clients, m.store.sources)
	}
	if v := m.viewFor(netip.MustParseAddr("10.9.9.9")); v.Namespace != "shop" {
		t.Errorf("an unknown client's namespace %q, want the block's", v.Namespace)
	}
}

func TestParseSettings(t *testing.T) {
	m := newTestMeshDNS(t, "table: {}", "example.com", "namespace Prod\ncluster_domain Corp.Local.\nfallthrough")
	if m.view.Namespace != "prod" {
		t.Errorf("namespace %q, want prod", m.view.Namespace)
	}
	if got, want := strings.Join(m.view.Search(), " "), "prod.svc.corp.local svc.corp.local corp.local"; got != want {
		t.Errorf("default search %q, want %q", got, want)
	}
	if len(m.Zones) != 1 || m.Zones[0] != "example.com." {
		t.Errorf("zones %v", m.Zones)
	}
	if m.store.table().TTL() != defaultTTL {
		t.Errorf("ttl %d, want %d", m.store.table().TTL(), defaultTTL)
	}
	if !m.Ready() {
		t.Error("not ready after its file loaded")
	}
}
