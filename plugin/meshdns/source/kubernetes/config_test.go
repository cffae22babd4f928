package kubernetes

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
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		input   string
		wantErr string
		check   func(*Config) bool
	}{
		{"kubernetes", "", func(c *Config) bool { return c.Kubeconfig == "" && c.StartupTimeout == DefaultStartupTimeout }},
		{"kubernetes {\n kubeconfig " + kubeconfig + " ctx\n namespaces a b\n serviceentries\n clients node-1\n cluster c1\n startup_timeout 2s\n}", "", func(c *Config) bool {
			return c.Kubeconfig == kubeconfig && c.Context == "ctx" && strings.Join(c.Namespaces, ",") == "a,b" && c.ServiceEntries &&
				c.Clients && c.ClientsNode == "node-1" && c.Cluster == "c1" && c.StartupTimeout == 2*time.Second
		}},
		{"kubernetes {\n clients\n}", "", func(c *Config) bool { return c.Clients && c.ClientsNode == "" }},
		{"kubernetes {\n clients_only\n sidecars\n}", "clients_only watches pods only", nil},
		{"kubernetes {\n sidecars\n mesh_config /nonexistent\n}", "mesh_config: stat /nonexistent", nil},
		{"kubernetes {\n mesh_config configmap istio\n}", "want NAMESPACE/NAME, such as istio-system/istio", nil},
		{"kubernetes {\n mesh_config configmap a/b/c\n}", "want NAMESPACE/NAME", nil},
		{"kubernetes {\n mesh_config /etc/mesh extra\n}", "want PATH or configmap [NAMESPACE/NAME]", nil},
		{"kubernetes {\n clients_only\n mesh_config configmap\n}", "clients_only watches pods only", nil},
		{"kubernetes {\n sidecars\n debug 127.0.0.1:9155\n}", "", func(c *Config) bool { return c.Sidecars && c.Debug == "127.0.0.1:9155" }},
		{"kubernetes {\n clients_only node-1\n}", "", func(c *Config) bool { return c.Clients && c.ClientsOnly && c.ClientsNode == "node-1" }},
		{"kubernetes {\n clients_only\n serviceentries\n}", "clients_only watches pods only", nil},
		{"kubernetes {\n clients_only a b\n}", "want [NODE]", nil},
		{"kubernetes {\n kubeconfig /nonexistent\n}", "kubeconfig: stat /nonexistent", nil},
		{"kubernetes {\n namespaces Bad_NS\n}", `"Bad_NS" is not a namespace name`, nil},
		{"kubernetes {\n namespaces\n}", "want at least one namespace", nil},
		{"kubernetes {\n serviceentries yes\n}", "want no arguments", nil},
		{"kubernetes {\n cluster\n}", "want one cluster id", nil},
		{"kubernetes {\n startup_timeout soon\n}", `"soon" is not a duration`, nil},
		{"kubernetes {\n clients\n clients\n}", "given twice", nil},
		{"kubernetes {\n watch everything\n}", "unknown property 'watch'", nil},
		{"kubernetes in-cluster", "options go in a block", nil},
		{"kubernetes {\n clients", "not closed", nil},
		{"kubernetes {\n clusterset\n}", "", func(c *Config) bool { return c.ClustersetZone == "clusterset.local" }},
		{"kubernetes {\n clusterset mc.Example.\n}", "", func(c *Config) bool { return c.ClustersetZone == "mc.example" }},
		{"kubernetes {\n clusterset *.x\n}", "is not a zone name", nil},
		{"kubernetes {\n cluster east\n network n1\n locality eu/eu-1\n remote west " + kubeconfig + " ctx network n2 locality eu/eu-2\n remote central " + kubeconfig + "\n" +
			" remote_secrets\n mesh_suffixes global .Mesh.\n export_label mesh/export=true\n gateway west 192.0.2.1 2001:db8::1\n gateway_port 443\n" +
			" vips 240.0.0.0/24\n vip_state /var/lib/meshdns/vips.json\n probe_interval 1s\n hold_down 10s\n lease 20s\n debug 127.0.0.1:9154\n}", "", func(c *Config) bool {
			m := c.Multicluster
			return m.Network == "n1" && m.Locality.String() == "eu/eu-1" && len(m.Remotes) == 2 && m.Remotes[0].Context == "ctx" &&
				m.Remotes[0].Network == "n2" && m.Remotes[0].Locality.Zone == "eu-2" && m.Remotes[1].Context == "" && m.RemoteSecrets == "istio-system" &&
				strings.Join(m.Suffixes, ",") == "global,mesh" && m.ExportLabel == "mesh/export=true" && len(m.Gateways["west"]) == 2 &&
				m.GatewayPort == 443 && m.VIPs[0].String() == "240.0.0.0/24" && m.ProbeInterval == time.Second && m.HoldDown == 10*time.Second &&
				m.Lease == 20*time.Second && c.Debug == "127.0.0.1:9154" && m.GatewayName == "istio-eastwestgateway"
		}},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n}", "", func(c *Config) bool {
			m := c.Multicluster
			return m.GatewayPort == DefaultGatewayPort && m.HoldDown == DefaultHoldDown && m.Lease == DefaultLease && m.ProbeInterval == DefaultProbeInterval
		}},
		{"kubernetes {\n mesh_suffixes global\n}", "needs this cluster's id", nil},
		{"kubernetes {\n cluster East_1\n mesh_suffixes global\n}", "needs this cluster's id, a DNS label", nil},
		{"kubernetes {\n cluster east\n remote west " + kubeconfig + "\n}", "need mesh_suffixes", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n remote east " + kubeconfig + "\n}", "that is this cluster's id", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n remote west /nonexistent\n}", "remote west: stat /nonexistent", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n remote west " + kubeconfig + " ctx zone z\n}", `unknown option "zone"`, nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n remote West " + kubeconfig + "\n}", "is not a DNS label", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n remote w " + kubeconfig + "\n remote w " + kubeconfig + "\n}", `cluster "w" given twice`, nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n gateway west 192.0.2.300\n}", "is not an IP address", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n vips 240.0.0.1/24\n vip_state x\n}", "not a network with room", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n vips\n}", "vips needs vip_state", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n hold_down -1s\n}", "not a positive duration", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n locality /z\n}", "is not REGION or REGION/ZONE", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n gateway_port 70000\n}", "is not a port", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n export_label bad/key/x\n}", "is not a label key", nil},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.Next()
		cfg, err := Parse(c)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.input, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.input, err)
			continue
		}
		if !tc.check(cfg) {
			t.Errorf("%q: parsed as %+v", tc.input, cfg)
		}
	}
}

func TestRestConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := (&Config{}).restConfig(); err == nil || !strings.Contains(err.Error(), "not in a cluster") {
		t.Errorf("in-cluster outside a cluster: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(bad, []byte("{not yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Config{Kubeconfig: bad}).restConfig(); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("unreadable kubeconfig: %v", err)
	}
}
