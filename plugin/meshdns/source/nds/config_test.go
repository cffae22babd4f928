package nds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	ca, tok, crt, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	for _, f := range []string{ca, tok, crt, key} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := "nds istiod.istio-system.svc:15012 {\n tls " + ca + " istiod.istio-system.svc\n client_cert " + crt + " " + key +
		"\n token " + tok + "\n node_id sidecar~10.1.1.1~vm1.ns~ns.svc.cluster.local\n cluster east\n metadata A 1\n metadata B 2\n delta\n}"
	c := caddy.NewTestController("dns", good)
	c.Next()
	cfg, err := Parse(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "istiod.istio-system.svc:15012" || cfg.CAFile != ca || cfg.ServerName != "istiod.istio-system.svc" || cfg.CertFile != crt ||
		cfg.KeyFile != key || cfg.TokenFile != tok || cfg.nodeID() != "sidecar~10.1.1.1~vm1.ns~ns.svc.cluster.local" || cfg.Cluster != "east" ||
		!cfg.Delta || cfg.Metadata["A"] != "1" || cfg.Metadata["B"] != "2" {
		t.Errorf("parsed %+v", cfg)
	}
	if md := cfg.metadata(); md["CLUSTER_ID"] != "east" || md["A"] != "1" || md["DNS_CAPTURE"] != "true" {
		t.Errorf("metadata %v", md)
	}

	tests := []struct{ input, want string }{
		{"nds", "Testfile:1 - Error during parsing: nds: want one ADDRESS (host:port), got 0 arguments"},
		{"nds a:1 b:2", "got 2 arguments"},
		{"nds istiod", `nds: "istiod" is not host:port`},
		{"nds a:1 {\n colour red\n}", "Testfile:2 - Error during parsing: nds: unknown property 'colour'"},
		{"nds a:1 {\n tls\n}", "Testfile:2 - Error during parsing: nds: tls: want CA_FILE [SERVER_NAME], got 0 arguments"},
		{"nds a:1 {\n tls /nonexistent/ca.pem\n}", "nds: tls: open /nonexistent/ca.pem: no such file or directory"},
		{"nds a:1 {\n client_cert " + crt + "\n}", "nds: client_cert: want CERT_FILE KEY_FILE, got 1 arguments"},
		{"nds a:1 {\n token\n}", "nds: token: want FILE"},
		{"nds a:1 {\n token /nonexistent/token\n}", "nds: token: open /nonexistent/token"},
		{"nds a:1 {\n node_id x\n}", `nds: node_id: "x" is not TYPE~IP~ID~DOMAIN`},
		{"nds a:1 {\n cluster\n}", "nds: cluster: want ID"},
		{"nds a:1 {\n metadata K\n}", "nds: metadata: want KEY VALUE"},
		{"nds a:1 {\n delta now\n}", "nds: delta: want no arguments"},
		{"nds a:1 {\n cluster a\n cluster b\n}", "Testfile:3 - Error during parsing: nds: property 'cluster' given twice"},
		{"nds a:1 {\n delta", "nds: block not closed"},
		{"nds a:1 {\n namespaces\n}", "nds: namespaces: want clients, or NAMESPACE..., got 0 arguments"},
		{"nds a:1 {\n namespaces a B_c\n}", `nds: namespaces: "B_c" is not a namespace name`},
		{"nds a:1 {\n namespaces clients\n node_id sidecar~10.1.1.1~vm1.ns~ns.svc.cluster.local\n}", "node_id and namespaces exclude each other"},
		{"nds a:1 {\n namespace_grace 5s\n}", "namespace_grace without namespaces"},
		{"nds a:1 {\n token_request\n}", "token_request without namespaces"},
		{"nds a:1 {\n namespaces a\n token_request a b\n}", "nds: token_request: want [SERVICE_ACCOUNT], got 2 arguments"},
		{"nds a:1 {\n namespaces a\n token_request Bad_SA\n}", `"Bad_SA" is not a service account name`},
		{"nds a:1 {\n namespaces a\n token_request\n token " + tok + "\n}", "token and token_request exclude each other"},
		{"nds a:1 {\n namespaces clients\n namespace_grace soon\n}", `nds: namespace_grace: "soon" is not a duration`},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.Next()
		_, err := Parse(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.input, err, tc.want)
		}
	}
}

func TestParseNamespaces(t *testing.T) {
	for input, want := range map[string]func(*Config) bool{
		"nds a:1 {\n namespaces clients\n}": func(c *Config) bool {
			return c.ClientNamespaces && c.Namespaces == nil && c.PerNamespace() && c.grace() == DefaultGrace
		},
		"nds a:1 {\n namespaces a b a\n namespace_grace 2s\n}": func(c *Config) bool {
			return !c.ClientNamespaces && len(c.Namespaces) == 2 && c.PerNamespace() && c.grace() == 2*time.Second
		},
		"nds a:1": func(c *Config) bool { return !c.PerNamespace() },
		"nds a:1 {\n namespaces clients\n token_request\n}": func(c *Config) bool {
			return c.TokenRequest && c.ServiceAccount == DefaultServiceAccount
		},
		"nds a:1 {\n namespaces clients\n token_request istio.dns\n}": func(c *Config) bool { return c.ServiceAccount == "istio.dns" },
	} {
		c := caddy.NewTestController("dns", input)
		c.Next()
		cfg, err := Parse(c)
		if err != nil || !want(cfg) {
			t.Errorf("%q: %+v, %v", input, cfg, err)
		}
	}
	cfg := &Config{ClusterDomain: "example.org", Namespaces: []string{"a"}}
	if id := cfg.nodeIDIn("shop"); !strings.HasSuffix(id, ".shop~shop.svc.example.org") || !strings.HasPrefix(id, "sidecar~") {
		t.Errorf("node id %q", id)
	}
	if md := cfg.metadataIn("shop"); md["NAMESPACE"] != "shop" {
		t.Errorf("metadata %v", md)
	}
}

func TestBadCAFileFailsNew(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(&Config{Address: "a:1", CAFile: ca}); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("New with a bad CA: %v", err)
	}
}
