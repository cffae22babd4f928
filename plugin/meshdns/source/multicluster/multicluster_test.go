package multicluster

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

func TestNew(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, dir)
	local := Local{Cluster: "east", Source: "kubernetes in-cluster", StartupTimeout: 3 * time.Second}
	cfg := &Config{Suffixes: []string{"global", "mesh"}, Remotes: []Remote{{ID: "west", Kubeconfig: kubeconfig}},
		VIPs: DefaultVIPRanges, VIPState: filepath.Join(dir, "vips.json")}
	m, err := New(cfg, local)
	if err != nil {
		t.Fatal(err)
	}
	// The name keys the table carried across reloads: it must not change.
	if got := m.String(); got != "multicluster east global,mesh (kubernetes in-cluster)" {
		t.Errorf("String %q", got)
	}
	if m.Kind() != "multicluster" || m.StartupTimeout() != 3*time.Second || m.remotes["west"].Host != "https://192.0.2.1:6443" || m.vips == nil {
		t.Errorf("kind %s, timeout %v, remotes %v", m.Kind(), m.StartupTimeout(), m.remotes)
	}
	cfg.Remotes[0].Kubeconfig = filepath.Join(dir, "missing")
	if _, err := New(cfg, local); err == nil || !strings.Contains(err.Error(), "remote west") {
		t.Errorf("a missing remote kubeconfig: %v", err)
	}
}

// writeKubeconfig writes a kubeconfig of a cluster at 192.0.2.1 into dir, and returns its path.
func writeKubeconfig(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://192.0.2.1:6443\"}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSameEntries(t *testing.T) {
	a := []table.Entry{{Host: "web.shop.global", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}
	b := []table.Entry{{Host: "web.shop.global", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.2")}}}
	if !sameEntries(a, a) || sameEntries(a, b) || sameEntries(a, nil) {
		t.Error("sameEntries compares hosts and addresses")
	}
}
