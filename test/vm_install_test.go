package test

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/source/file"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/miekg/dns"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
)

// snapshot describes every file, directory and symlink under root: path, type, mode, content hash or
// link target.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			desc += " -> " + target
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for path, content := range files {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runInstall(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"../deploy/vm/install.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "ROOT="+root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVMInstall runs deploy/vm/install.sh against temporary roots, a plain resolv.conf and one run by
// systemd-resolved: install points the resolver at meshdns and keeps the old resolvers as upstreams,
// and uninstall puts the root back as it was, byte for byte.
func TestVMInstall(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tree     map[string]string
		resolver string // the file that must point at 127.0.0.1 after install
		want     string // what it must hold
	}{
		{"resolv.conf", map[string]string{
			"etc/resolv.conf": "search corp.example.com\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions ndots:2\n",
			"usr/bin/true":    "",
		}, "etc/resolv.conf", "nameserver 127.0.0.1\nsearch corp.example.com\noptions ndots:2\n"},
		{"systemd-resolved", map[string]string{
			"etc/resolv.conf":                        "-> ../run/systemd/resolve/stub-resolv.conf",
			"run/systemd/resolve/stub-resolv.conf":   "nameserver 127.0.0.53\n",
			"run/systemd/resolve/resolv.conf":        "nameserver 192.0.2.1\nnameserver 192.0.2.2\n",
			"etc/systemd/system/multi-user.target.x": "",
			"var/lib/other/keep":                     "x",
		}, "etc/systemd/resolved.conf.d/meshdns.conf", "[Resolve]\nDNS=127.0.0.1\nDomains=~.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.tree)
			before := snapshot(t, root)
			runInstall(t, root, "install", binary)

			if got := readFile(t, filepath.Join(root, tc.resolver)); !strings.Contains(got, tc.want) {
				t.Errorf("%s after install:\n%s\nwant it to hold:\n%s", tc.resolver, got, tc.want)
			}
			if got := readFile(t, filepath.Join(root, "etc/meshdns/upstream.conf")); got != "nameserver 192.0.2.1\nnameserver 192.0.2.2\n" {
				t.Errorf("upstream.conf: %q", got)
			}
			for _, f := range []string{"usr/local/bin/meshdns", "etc/systemd/system/meshdns.service", "etc/meshdns/Corefile"} {
				if _, err := os.Stat(filepath.Join(root, f)); err != nil {
					t.Errorf("after install: %v", err)
				}
			}
			if info, err := os.Stat(filepath.Join(root, "usr/local/bin/meshdns")); err == nil && info.Mode().Perm() != 0o755 {
				t.Errorf("binary mode %v", info.Mode())
			}
			// A second install is refused rather than losing the record of the first.
			cmd := exec.Command("sh", "../deploy/vm/install.sh", "install", binary)
			cmd.Env = append(os.Environ(), "ROOT="+root)
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already installed") {
				t.Errorf("second install: %v %s", err, out)
			}

			runInstall(t, root, "uninstall")
			after := snapshot(t, root)
			for path, desc := range before {
				if after[path] != desc {
					t.Errorf("%s: %q before, %q after uninstall", path, desc, after[path])
				}
			}
			for path, desc := range after {
				if _, ok := before[path]; !ok {
					t.Errorf("%s (%s) left behind", path, desc)
				}
			}
		})
	}
}

// TestVMCorefile runs deploy/vm/Corefile as the unit runs it: the CA and the token from systemd's
// credentials directory, a control plane over TLS in place of the east-west gateway, a stand-in for
// the VM's old resolvers. Mesh names come from the control plane, the rest from the upstream.
func TestVMCorefile(t *testing.T) {
	entries, err := file.Parse("t.json", []byte(`{"table": {"reviews.vm-workloads.svc.cluster.local": {"ips": ["10.96.10.12"], "registry": "Kubernetes"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	pki := ndstest.NewPKI(t, "istiod.istio-system.svc")
	srv := ndstest.New(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pki.Server}}))
	srv.OnOpen = func() any {
		return &discovery.DiscoveryResponse{TypeUrl: nds.TypeURL, VersionInfo: "1", Nonce: "1",
			Resources: []*anypb.Any{{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable(entries)}}}
	}
	creds := t.TempDir()
	ca, _ := os.ReadFile(pki.CAFile)
	for name, data := range map[string]string{"root-cert.pem": string(ca), "istio-token": "vm-token\n"} {
		if err := os.WriteFile(filepath.Join(creds, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	up := startUpstream(t)
	corefile := readFile(t, "../deploy/vm/Corefile")
	port := freePort(t)
	for _, r := range []struct{ old, new string }{
		{"\n. {", "\n.:" + port + " {"},
		{"203.0.113.10:15012", srv.Addr},
		{"token /var/run/secrets/tokens/istio-token", "token " + filepath.Join(creds, "istio-token")},
		{"forward . /etc/meshdns/upstream.conf", "forward . " + up.addr},
		{"prometheus 127.0.0.1:9153", "prometheus 127.0.0.1:" + freePort(t)},
		{"health 127.0.0.1:8080", "health 127.0.0.1:" + freePort(t)},
	} {
		if !strings.Contains(corefile, r.old) {
			t.Fatalf("deploy/vm/Corefile has no %q", r.old)
		}
		corefile = strings.Replace(corefile, r.old, r.new, 1)
	}
	addr := "127.0.0.1:" + port
	startCoreDNS(t, t.TempDir(), corefile, addr)
	resolvesTo(t, addr, "reviews.vm-workloads.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	resolvesTo(t, addr, "reviews.", dns.TypeA, "10.96.10.12") // the VM's namespace
	resolvesTo(t, addr, "www.example.org.", dns.TypeA, "192.0.2.53")
	if tokens := srv.Tokens(); len(tokens) == 0 || tokens[0] != "[Bearer vm-token]" {
		t.Errorf("the control plane saw tokens %v", tokens)
	}
}

// TestVMUnit has systemd check the unit (systemd-analyze verify) and rate its hardening: the
// exposure score must stay at 2.0 or below ("OK"; a unit with no hardening scores 9.6).
func TestVMUnit(t *testing.T) {
	requireTool(t, "systemd-analyze")
	dir := t.TempDir()
	unit := strings.ReplaceAll(readFile(t, "../deploy/vm/meshdns.service"), "/usr/local/bin/meshdns", binary)
	path := filepath.Join(dir, "meshdns.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Log(lines[len(lines)-1])
	if err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}
}

// istioctlFiles is what istioctl x workload entry configure writes for a WorkloadGroup vm-app in
// vm-ns (service account vm-sa, network vm-net) with --clusterID cluster-1 --ingressIP 192.0.2.1
// --internalIP 192.0.2.2, trimmed to what the installer reads and a few it must skip.
var istioctlFiles = map[string]string{
	"cluster.env": "CANONICAL_REVISION=latest\nCANONICAL_SERVICE=vm-app\nISTIO_INBOUND_PORTS='*'\n" +
		"ISTIO_META_AUTO_REGISTER_GROUP=vm-app\nISTIO_META_CLUSTER_ID=cluster-1\nISTIO_META_DNS_CAPTURE=true\n" +
		"ISTIO_META_NETWORK=vm-net\nISTIO_METAJSON_LABELS='{\"app\":\"vm-app\"}'\nISTIO_NAMESPACE=vm-ns\n" +
		"ISTIO_SERVICE=vm-app.vm-ns\nISTIO_SVC_IP=192.0.2.2\nPOD_NAMESPACE=vm-ns\nSERVICE_ACCOUNT='vm-sa'\n",
	"mesh.yaml": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n  proxyMetadata:\n" +
		"    ISTIO_META_CLUSTER_ID: cluster-1\n    POD_NAMESPACE: vm-ns\n",
	"hosts":         "192.0.2.1 istiod.istio-system.svc\n",
	"root-cert.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	"istio-token":   "eyJhbGciOiJSUzI1NiJ9.vm.token",
}

// TestVMInstallIstio installs from istioctl's files into a temporary root: the Corefile names
// istiod's address from hosts with its name as the TLS server name, the node istio-agent would be,
// and the token where it was installed; show prints the same Corefile; a directory missing values
// is refused with every one of them named and nothing written; uninstall restores the root.
func TestVMInstallIstio(t *testing.T) {
	istio := t.TempDir()
	writeTree(t, istio, istioctlFiles)
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"etc/resolv.conf":   "nameserver 192.0.2.53\n",
		"etc/hostname":      "vm-1\n",
		"etc/certs/old.pem": "keep",
	})
	before := snapshot(t, root)

	shown := runInstall(t, root, "show", "--istio", istio)
	for _, want := range []string{
		"nds 192.0.2.1:15012 {",
		"tls {$CREDENTIALS_DIRECTORY}/root-cert.pem istiod.istio-system.svc\n",
		"token /var/run/secrets/tokens/istio-token\n",
		"node_id sidecar~192.0.2.2~vm-1.vm-ns~vm-ns.svc.cluster.local\n",
		"cluster cluster-1\n",
		"metadata SERVICE_ACCOUNT vm-sa\n",
		"metadata NETWORK vm-net\n",
		"namespace vm-ns\n",
		"forward . /etc/meshdns/upstream.conf\n",
	} {
		if !strings.Contains(shown, want) {
			t.Errorf("show has no %q:\n%s", want, shown)
		}
	}
	if strings.Contains(shown, "AUTO_REGISTER") {
		t.Errorf("show sends AUTO_REGISTER_GROUP (istio-agent registers the VM, not meshdns):\n%s", shown)
	}
	if after := snapshot(t, root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("show changed the root")
	}

	runInstall(t, root, "install", "--istio", istio, binary)
	if got := readFile(t, filepath.Join(root, "etc/meshdns/Corefile")); got != shown {
		t.Errorf("installed Corefile differs from show:\n%s\nshow:\n%s", got, shown)
	}
	for path, want := range map[string]string{
		"var/run/secrets/tokens/istio-token": istioctlFiles["istio-token"],
		"etc/certs/root-cert.pem":            istioctlFiles["root-cert.pem"],
	} {
		if got := readFile(t, filepath.Join(root, path)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if info, err := os.Stat(filepath.Join(root, "var/run/secrets/tokens/istio-token")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("token: %v %v, want mode 0600", info, err)
	}
	// The unit's credential is the file installed.
	if unit := readFile(t, filepath.Join(root, "etc/systemd/system/meshdns.service")); !strings.Contains(unit, "LoadCredential=root-cert.pem:/etc/certs/root-cert.pem\n") {
		t.Errorf("the unit does not load /etc/certs/root-cert.pem:\n%s", unit)
	}
	runInstall(t, root, "uninstall")
	after := snapshot(t, root)
	for path, desc := range before {
		if after[path] != desc {
			t.Errorf("%s: %q before, %q after uninstall", path, desc, after[path])
		}
	}
	for path, desc := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("%s (%s) left behind", path, desc)
		}
	}

	// /var/run is a tmpfs on a VM: after a reboot the token and its directories are gone, and
	// uninstall still undoes the rest.
	runInstall(t, root, "install", "--istio", istio, binary)
	if err := os.RemoveAll(filepath.Join(root, "var/run")); err != nil {
		t.Fatal(err)
	}
	runInstall(t, root, "uninstall")
	if after := snapshot(t, root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("uninstall after /var/run was emptied: %v, want %v", after, before)
	}

	// Values missing: all named at once, nothing installed.
	writeTree(t, istio, map[string]string{
		"cluster.env": "ISTIO_NAMESPACE=vm-ns\nSERVICE_ACCOUNT=vm-sa\n",
		"hosts":       "",
		"mesh.yaml":   "defaultConfig:\n  proxyMetadata: {}\n",
	})
	if err := os.Remove(filepath.Join(istio, "istio-token")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "../deploy/vm/install.sh", "install", "--istio", istio, binary)
	cmd.Env = append(os.Environ(), "ROOT="+root)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("install with values missing succeeded:\n%s", out)
	}
	for _, want := range []string{"istio-token: no such file", "defaultConfig.discoveryAddress", "ISTIO_META_CLUSTER_ID", "ISTIO_SVC_IP"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error does not name %s:\n%s", want, out)
		}
	}
	if after := snapshot(t, root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused install changed the root")
	}
	// A cluster without a name: istioctl writes ISTIO_META_CLUSTER_ID='', and the Corefile keeps
	// meshdns's default cluster, as istio-agent keeps istiod's.
	env := strings.Replace(istioctlFiles["cluster.env"], "ISTIO_META_CLUSTER_ID=cluster-1", "ISTIO_META_CLUSTER_ID=''", 1)
	writeTree(t, istio, map[string]string{"cluster.env": env, "mesh.yaml": istioctlFiles["mesh.yaml"],
		"hosts": istioctlFiles["hosts"], "istio-token": istioctlFiles["istio-token"]})
	if shown := runInstall(t, root, "show", "--istio", istio); strings.Contains(shown, "cluster ") || !strings.Contains(shown, "node_id sidecar~192.0.2.2~") {
		t.Errorf("show with an empty cluster id:\n%s", shown)
	}
	// An address hosts does not have for the discovery host is named as such.
	writeTree(t, istio, map[string]string{"mesh.yaml": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n", "hosts": "192.0.2.9 other.example\n"})
	cmd = exec.Command("sh", "../deploy/vm/install.sh", "show", "--istio", istio)
	cmd.Env = append(os.Environ(), "ROOT="+root)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "an address for istiod.istio-system.svc in "+istio+"/hosts") {
		t.Errorf("show with no address for istiod: %v\n%s", err, out)
	}
}
