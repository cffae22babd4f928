package nds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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

func TestBadCAFileFailsNew(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(&Config{Address: "a:1", CAFile: ca}); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("New with a bad CA: %v", err)
	}
}
