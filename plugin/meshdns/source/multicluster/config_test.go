package multicluster

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubernetes"
)

var _ kubernetes.Extension = (*Config)(nil)

// TestParse reads the multicluster options as they are written, in a kubernetes block.
func TestParse(t *testing.T) {
	kubeconfig := writeKubeconfig(t, t.TempDir())
	tests := []struct {
		input   string
		wantErr string
		check   func(*kubernetes.Config, *Config) bool
	}{
		{"kubernetes {\n cluster east\n network n1\n locality eu/eu-1\n remote west " + kubeconfig + " ctx network n2 locality eu/eu-2\n remote central " + kubeconfig + "\n" +
			" remote_secrets\n mesh_suffixes global .Mesh.\n export_label mesh/export=true\n gateway west 192.0.2.1 2001:db8::1\n gateway_port 443\n" +
			" vips 240.0.0.0/24\n vip_state /var/lib/meshdns/vips.json\n probe_interval 1s\n hold_down 10s\n lease 20s\n debug 127.0.0.1:9154\n}", "", func(c *kubernetes.Config, mc *Config) bool {
			m := mc
			return m.Network == "n1" && m.Locality.String() == "eu/eu-1" && len(m.Remotes) == 2 && m.Remotes[0].Context == "ctx" &&
				m.Remotes[0].Network == "n2" && m.Remotes[0].Locality.Zone == "eu-2" && m.Remotes[1].Context == "" && m.RemoteSecrets == "istio-system" &&
				strings.Join(m.Suffixes, ",") == "global,mesh" && m.ExportLabel == "mesh/export=true" && len(m.Gateways["west"]) == 2 &&
				m.GatewayPort == 443 && m.VIPs[0].String() == "240.0.0.0/24" && m.ProbeInterval == time.Second && m.HoldDown == 10*time.Second &&
				m.Lease == 20*time.Second && c.Debug == "127.0.0.1:9154" && m.GatewayName == "istio-eastwestgateway"
		}},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n}", "", func(c *kubernetes.Config, mc *Config) bool {
			m := mc
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
		{"kubernetes {\n clients_only\n cluster east\n mesh_suffixes global\n}", "clients_only watches pods only", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n mesh_suffixes mesh\n}", "given twice", nil},
		{"kubernetes {\n cluster east\n mesh_suffixes global\n gateway a 192.0.2.1\n gateway b 192.0.2.2\n}", "", func(_ *kubernetes.Config, m *Config) bool {
			return len(m.Gateways) == 2
		}},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.Next()
		mc := &Config{}
		cfg, err := kubernetes.Parse(c, mc)
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
		if !tc.check(cfg, mc) {
			t.Errorf("%q: parsed as %+v, %+v", tc.input, cfg, mc)
		}
	}
}

// FuzzParse feeds a kubernetes block with the multicluster options any text: it parses or says why,
// never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"kubernetes {\n cluster east\n locality eu/eu-1\n remote west /nonexistent ctx network n2\n remote_secrets ns\n mesh_suffixes global\n gateway west 192.0.2.1\n vips 240.240.0.0/16\n vip_state /tmp/x\n hold_down 1s\n}",
		"kubernetes {\n cluster east\n mesh_suffixes global mesh\n gateway_service ns/gw\n gateway_port 443\n lease 3s\n}",
		"kubernetes {\n mesh_suffixes\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		c := caddy.NewTestController("dns", input)
		if !c.Next() {
			return
		}
		cfg, err := kubernetes.Parse(c, &Config{})
		if err == nil && cfg == nil {
			t.Fatal("no config and no error")
		}
	})
}
