package nodecache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeLocalDNSTemplate is the Corefile of NodeLocal DNSCache's manifest (nodelocaldns.yaml), as
// its ConfigMap holds it after the deploy-time sed: the pillars filled at run time are left.
const nodeLocalDNSTemplate = `cluster.local:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind 169.254.20.10 10.96.0.10
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    health 169.254.20.10:8080
    }
in-addr.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.96.0.10
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    }
.:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.96.0.10
    forward . __PILLAR__UPSTREAM__SERVERS__
    prometheus :9253
    }
`

func TestSplitArgs(t *testing.T) {
	c, rest, err := SplitArgs([]string{"-localip", "169.254.20.10,10.96.0.10", "-conf", "/etc/Corefile", "-upstreamsvc", "kube-dns-upstream",
		"-skipteardown=true", "-setupinterface=false", "-health-port=9090", "-dns.port", "53", "-syncinterval", "5s"})
	if err != nil {
		t.Fatal(err)
	}
	if c == nil || len(c.LocalIPs) != 2 || c.UpstreamSvc != "kube-dns-upstream" || !c.SkipTeardown || c.SetupInterface || !c.SetupIPTables ||
		c.HealthPort != 9090 || c.SyncInterval != 5*time.Second || c.BaseCorefile != "/etc/coredns/Corefile.base" {
		t.Errorf("compat %+v", c)
	}
	if strings.Join(rest, " ") != "-conf /etc/Corefile -dns.port 53" {
		t.Errorf("left for CoreDNS: %v", rest)
	}
	if c, rest, err := SplitArgs([]string{"-conf", "Corefile"}); c != nil || err != nil || len(rest) != 2 {
		t.Errorf("without -localip: %v %v %v", c, rest, err)
	}
	for _, bad := range [][]string{{"-localip", "169.254.20.300"}, {"-localip"}, {"-localip", "1.2.3.4", "-setupiptables=maybe"}, {"-localip", "1.2.3.4", "-kubednscm", "/etc/kube-dns"}} {
		if _, _, err := SplitArgs(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	base, resolv := filepath.Join(dir, "Corefile.base"), filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(base, []byte(nodeLocalDNSTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(resolv, []byte("search example.com\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := SplitArgs([]string{"-localip", "169.254.20.10,10.96.0.10", "-upstreamsvc", "kube-dns-upstream",
		"-basecorefile", base, "-corefile", filepath.Join(dir, "Corefile")})
	if err != nil {
		t.Fatal(err)
	}
	c.ResolvConf = resolv
	if _, err := c.Generate(); err == nil || !strings.Contains(err.Error(), "KUBE_DNS_UPSTREAM_SERVICE_HOST") {
		t.Errorf("without the Service's address: %v", err)
	}
	t.Setenv("KUBE_DNS_UPSTREAM_SERVICE_HOST", "10.96.0.11")
	changed, err := c.Write()
	if err != nil || !changed {
		t.Fatalf("write: %v %v", changed, err)
	}
	out, _ := os.ReadFile(c.Corefile)
	for _, want := range []string{
		"cluster.local:53 {\n    nodecache 169.254.20.10 10.96.0.10 {\n        interface nodelocaldns\n        health_port 8080\n",
		"forward . 10.96.0.11 {", "forward . 192.0.2.1 192.0.2.2\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("generated Corefile lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(string(out), "nodecache") != 1 || strings.Contains(string(out), "__PILLAR__") {
		t.Errorf("generated Corefile:\n%s", out)
	}
	if changed, err := c.Write(); changed || err != nil {
		t.Errorf("writing the same again: %v %v", changed, err)
	}
	if err := os.WriteFile(base, []byte(".:53 {\n    forward . __PILLAR__SOMETHING__ELSE__\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Generate(); err == nil || !strings.Contains(err.Error(), "__PILLAR__SOMETHING__ELSE__") {
		t.Errorf("an unknown pillar: %v", err)
	}
}
