package ambient

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
	good := "ambient istiod.istio-system.svc:15012 {\n tls " + ca + " istiod.istio-system.svc\n client_cert " + crt + " " + key +
		"\n token " + tok + "\n node_id ztunnel~10.1.1.1~meshdns-a.kube-system~kube-system.svc.cluster.local\n cluster east\n network net1\n metadata A 1\n metadata NODE_NAME n1\n debug 127.0.0.1:9155\n}"
	c := caddy.NewTestController("dns", good)
	c.Next()
	cfg, err := Parse(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "istiod.istio-system.svc:15012" || cfg.CAFile != ca || cfg.ServerName != "istiod.istio-system.svc" || cfg.CertFile != crt ||
		cfg.KeyFile != key || cfg.TokenFile != tok || cfg.nodeID() != "ztunnel~10.1.1.1~meshdns-a.kube-system~kube-system.svc.cluster.local" ||
		cfg.Cluster != "east" || cfg.Network != "net1" || cfg.Debug != "127.0.0.1:9155" {
		t.Errorf("parsed %+v", cfg)
	}
	if md := cfg.metadata(); md["CLUSTER_ID"] != "east" || md["A"] != "1" || md["NODE_NAME"] != "n1" || md["NAMESPACE"] != "kube-system" {
		t.Errorf("metadata %v", md)
	}
	cfg.NodeID, cfg.Namespace = "", "shop" // the default node id is of the block's namespace
	if md := cfg.metadata(); md["NAMESPACE"] != "shop" || !strings.HasSuffix(cfg.nodeID(), "~shop.svc.cluster.local") {
		t.Errorf("default node id %s, metadata %v", cfg.nodeID(), md)
	}
	c = caddy.NewTestController("dns", "ambient 127.0.0.1:15010")
	c.Next()
	if cfg, err := Parse(c); err != nil || cfg.Address != "127.0.0.1:15010" || cfg.Cluster != DefaultCluster {
		t.Errorf("without a block: %+v, %v", cfg, err)
	}

	tests := []struct{ input, want string }{
		{"ambient", "Testfile:1 - Error during parsing: ambient: want one ADDRESS (host:port), got 0 arguments"},
		{"ambient a:1 b:2", "got 2 arguments"},
		{"ambient istiod", `ambient: "istiod" is not host:port`},
		{"ambient a:1 {\n colour red\n}", "Testfile:2 - Error during parsing: ambient: unknown property 'colour'"},
		{"ambient a:1 {\n tls\n}", "Testfile:2 - Error during parsing: ambient: tls: want CA_FILE [SERVER_NAME], got 0 arguments"},
		{"ambient a:1 {\n tls /nonexistent/ca.pem\n}", "ambient: tls: open /nonexistent/ca.pem: no such file or directory"},
		{"ambient a:1 {\n client_cert " + crt + "\n}", "ambient: client_cert: want CERT_FILE KEY_FILE, got 1 arguments"},
		{"ambient a:1 {\n token /nonexistent/token\n}", "ambient: token: open /nonexistent/token"},
		{"ambient a:1 {\n node_id sidecar~1.1.1.1~a.b~b.svc.cluster.local\n}", `ambient: node_id: "sidecar~1.1.1.1~a.b~b.svc.cluster.local" is not ztunnel~IP~POD.NS~NS.svc.DOMAIN`},
		{"ambient a:1 {\n network\n}", "ambient: network: want NETWORK, got 0 arguments"},
		{"ambient a:1 {\n metadata K\n}", "ambient: metadata: want KEY VALUE"},
		{"ambient a:1 {\n debug 9155\n}", `ambient: debug: "9155" is not host:port`},
		{"ambient a:1 {\n network a\n network b\n}", "Testfile:3 - Error during parsing: ambient: property 'network' given twice"},
		{"ambient a:1 {\n cluster a", "ambient: block not closed"},
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
