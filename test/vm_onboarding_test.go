package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/need"
	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The VM's link to the "cluster": a veth pair on a documentation range. The host side stands for
// the east-west gateway (istiod's 15012 forwarded to the stack's istiod) and for the VM's old
// resolver; the namespace side is the VM.
const (
	vmGatewayIP = "198.51.100.1"
	vmAddress   = "198.51.100.2"
)

var workloadGroupGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "workloadgroups"}

// TestVMOnboardingIstioctl onboards a VM the way Istio does: a WorkloadGroup on the real
// kube-apiserver, `istioctl x workload entry configure` run against it, and install.sh given
// istioctl's directory (in a temporary root). The Corefile it writes runs in a network namespace
// that reaches istiod over a veth, on TLS with istioctl's root certificate and token, and glibc in
// that namespace resolves the mesh's Service and ServiceEntry, an external name, and a Service
// created afterwards. A token replaced mid-run (in place, then by rename) is the one the next
// stream sends; uninstall leaves the root as it was.
func TestVMOnboardingIstioctl(t *testing.T) {
	need.Root(t, "the VM's network namespace")
	need.Tool(t, "getent")
	istioctl, err := realstack.Istioctl()
	if err != nil {
		need.Skip(t, need.Stack, err.Error())
	}
	s := realstack.Start(t, realstack.Options{})
	n := newNetns(t)
	vethPair(t, n)

	const ns, sa, group = "vm-ns", "vm-sa", "vm-app"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := s.EnsureNamespace(ns); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The mesh config istioctl reads (istiod here reads a file): what Istio's chart puts in ConfigMap
	// istio, discoveryAddress included.
	if _, err := s.Kube.CoreV1().ConfigMaps(realstack.IstioNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio"},
		Data: map[string]string{"mesh": "trustDomain: cluster.local\nrootNamespace: istio-system\n" +
			"defaultConfig:\n  discoveryAddress: " + realstack.IstiodServerName + ":15012\n"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wg := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "WorkloadGroup",
		"metadata":   map[string]any{"name": group, "namespace": ns},
		"spec": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"app": group}},
			"template": map[string]any{"serviceAccount": sa, "network": "vm-net"},
		},
	}}
	if err := s.CreateObject(workloadGroupGVR, wg); err != nil {
		t.Fatal(err)
	}
	// istioctl copies the root certificate from the namespace's istio-ca-root-cert, which istiod
	// publishes shortly after the namespace appears.
	eventually(t, 30*time.Second, "istiod's root certificate in "+ns, func() error {
		_, err := s.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		return err
	})

	// Out of cluster istioctl needs: the stack's kubeconfig; --clusterID (else it reads ConfigMap
	// istio-sidecar-injector, which only the chart makes), istiod's own cluster, "Kubernetes" (istiod
	// checks the token with the client of the cluster the node claims); --ingressIP, istiod's address as the VM
	// reaches it (else it looks for Service istio-eastwestgateway); --internalIP, the VM's address
	// (ISTIO_SVC_IP, in the node id). --autoregister stays off, its default.
	files := t.TempDir()
	begin := time.Now()
	cmd := exec.CommandContext(ctx, istioctl, "x", "workload", "entry", "configure",
		"--name", group, "--namespace", ns, "-o", files,
		"--clusterID", "Kubernetes", "--ingressIP", vmGatewayIP, "--internalIP", vmAddress,
		"--kubeconfig", s.Kubeconfig, "--istioNamespace", realstack.IstioNamespace)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("istioctl x workload entry configure: %v\n%s", err, out)
	}
	t.Logf("istioctl x workload entry configure: %v\n%s", time.Since(begin).Round(time.Millisecond), out)
	for _, f := range []string{"cluster.env", "mesh.yaml", "hosts"} {
		t.Logf("%s:\n%s", f, readFile(t, filepath.Join(files, f)))
	}

	// The VM: a root with its resolver at the gateway side of the veth (the stub upstream).
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"etc/resolv.conf": "nameserver " + vmGatewayIP + "\noptions timeout:2\n",
		"etc/hostname":    "vm-1\n",
	})
	before := snapshot(t, root)
	runInstall(t, root, "install", "--istio", files, binary)
	corefile := readFile(t, filepath.Join(root, "etc/meshdns/Corefile"))
	t.Logf("Corefile:\n%s", corefile)
	const tokenPath = "/var/run/secrets/tokens/istio-token"
	for _, want := range []string{
		"nds " + vmGatewayIP + ":15012 {",
		"tls {$CREDENTIALS_DIRECTORY}/root-cert.pem " + realstack.IstiodServerName + "\n",
		"token " + tokenPath + "\n",
		"node_id sidecar~" + vmAddress + "~vm-1." + ns + "~" + ns + ".svc.cluster.local\n",
		"cluster Kubernetes\n",
		"metadata NETWORK vm-net\n",
	} {
		if !strings.Contains(corefile, want) {
			t.Errorf("the Corefile has no %q", want)
		}
	}

	forwarder := forwardTCP(t, vmGatewayIP+":15012", s.IstiodSecureGRPC)
	up := startStubResolver(t, vmGatewayIP+":53", "external.example.org.", "203.0.113.53")

	// Mesh objects present before the VM starts.
	reviews, err := s.CreateService("bookinfo", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	ratings, err := s.CreateService(ns, "ratings")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateServiceEntry("bookinfo", "partner", []string{"api.partner.example"}, nil, "DNS"); err != nil {
		t.Fatal(err)
	}

	// The VM's own resolv.conf is the one install.sh wrote; its files are read where installed: the
	// token at the path the Corefile names (under the root), the CA as the unit's credential.
	netnsEtc := filepath.Join("/etc/netns", n.name)
	if err := os.MkdirAll(netnsEtc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(netnsEtc) })
	if err := os.WriteFile(filepath.Join(netnsEtc, "resolv.conf"), []byte(readFile(t, filepath.Join(root, "etc/resolv.conf"))), 0o644); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(root, tokenPath)
	metrics := vmAddress + ":9153"
	for _, r := range []struct{ old, new string }{
		{"token " + tokenPath, "token " + token},
		{"forward . /etc/meshdns/upstream.conf", "forward . " + filepath.Join(root, "etc/meshdns/upstream.conf")},
		{"prometheus 127.0.0.1:9153", "prometheus " + metrics}, // read from the host, over the veth
	} {
		if !strings.Contains(corefile, r.old) {
			t.Fatalf("the Corefile has no %q", r.old)
		}
		corefile = strings.Replace(corefile, r.old, r.new, 1)
	}
	if got := readFile(t, filepath.Join(root, "etc/meshdns/upstream.conf")); got != "nameserver "+vmGatewayIP+"\n" {
		t.Errorf("upstream.conf: %q", got)
	}
	n.startArgs(t.TempDir(), "127.0.0.1", []string{"CREDENTIALS_DIRECTORY=" + filepath.Join(root, "etc/certs")}, "-conf", writeCorefile(t, corefile))

	// resolves waits until glibc in the namespace gets addresses for name, every one of them
	// accepted by want.
	resolves := func(timeout time.Duration, name string, want func(string) bool, what string) {
		t.Helper()
		eventually(t, timeout, "getent ahosts "+name+" giving "+what, func() error {
			out, err := n.try("getent", "ahosts", name)
			addrs := getentAddrs(out)
			if err != nil || len(addrs) == 0 {
				return fmt.Errorf("%v: %s", err, out)
			}
			for _, a := range addrs {
				if !want(a) {
					return fmt.Errorf("%v", addrs)
				}
			}
			return nil
		})
	}
	is := func(ip string) func(string) bool { return func(a string) bool { return a == ip } }
	// istiod auto-allocates from 240.240.0.0/16, and from 2001:2::/48 for IPv6.
	allocated := func(a string) bool { return strings.HasPrefix(a, "240.240.") || strings.HasPrefix(a, "2001:2:") }
	resolves(20*time.Second, "reviews.bookinfo.svc.cluster.local", is(reviews.Spec.ClusterIP), reviews.Spec.ClusterIP)
	resolves(5*time.Second, "reviews.bookinfo", is(reviews.Spec.ClusterIP), reviews.Spec.ClusterIP)
	resolves(5*time.Second, "ratings", is(ratings.Spec.ClusterIP), ratings.Spec.ClusterIP+" (the VM's namespace)")
	resolves(20*time.Second, "api.partner.example", allocated, "istiod's auto-allocated addresses")
	if out, _ := n.try("getent", "ahostsv4", "api.partner.example"); !strings.HasPrefix(out, "240.240.") {
		t.Errorf("getent ahostsv4 api.partner.example: %q, want a 240.240.x.y", out)
	}
	resolves(5*time.Second, "external.example.org", is("203.0.113.53"), "the stub upstream's answer")
	if up.count() == 0 {
		t.Errorf("the upstream never saw external.example.org")
	}
	connected := `coredns_meshdns_nds_connected{address="` + vmGatewayIP + `:15012"}`
	if got := scrapeMetric(t, metrics, connected); got != 1 {
		t.Errorf("%s = %v", connected, got)
	}

	begin = time.Now()
	details, err := s.CreateService("bookinfo", "details")
	if err != nil {
		t.Fatal(err)
	}
	resolves(10*time.Second, "details.bookinfo.svc.cluster.local", is(details.Spec.ClusterIP), details.Spec.ClusterIP)
	t.Logf("a new Service resolved on the VM %v after it was created", time.Since(begin).Round(time.Millisecond))

	// Token rotation. First a token istiod refuses, written in place, and the stream cut: the next
	// stream must send it and be refused (so the file is read again, not remembered).
	if err := os.WriteFile(token, []byte("not-a-jwt"), 0o600); err != nil {
		t.Fatal(err)
	}
	accepted := forwarder.accepted.Load()
	forwarder.drop()
	eventually(t, 10*time.Second, "a new connection after the cut", func() error {
		if forwarder.accepted.Load() == accepted {
			return fmt.Errorf("none")
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	if got := scrapeMetric(t, metrics, connected); got != 0 {
		t.Fatalf("with a refused token in %s the stream is still up (%s = %v): the token was not read again", token, connected, got)
	}
	resolves(2*time.Second, "details.bookinfo.svc.cluster.local", is(details.Spec.ClusterIP), "the last table, kept while refused")

	// Then a renewed token, as istioctl writes it, put in place by rename: the stream comes back
	// with it, without a restart, and pushes flow again.
	begin = time.Now()
	fresh, err := s.IstioToken(ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token+".new", []byte(fresh), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(token+".new", token); err != nil {
		t.Fatal(err)
	}
	eventually(t, 45*time.Second, "the stream back with the renewed token", func() error {
		if got := scrapeMetric(t, metrics, connected); got != 1 {
			return fmt.Errorf("%s = %v", connected, got)
		}
		return nil
	})
	t.Logf("the stream came back %v after the renewed token was renamed into place", time.Since(begin).Round(time.Millisecond))
	ratingsV2, err := s.CreateService("bookinfo", "ratings-v2")
	if err != nil {
		t.Fatal(err)
	}
	resolves(10*time.Second, "ratings-v2.bookinfo.svc.cluster.local", is(ratingsV2.Spec.ClusterIP), ratingsV2.Spec.ClusterIP+" (pushed after the rotation)")

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
}

// vethPair joins n to the host: vmGatewayIP on the host side, vmAddress inside.
func vethPair(t *testing.T, n *netns) {
	t.Helper()
	host, peer := fmt.Sprintf("mvh%d", os.Getpid()%100000), fmt.Sprintf("mvn%d", os.Getpid()%100000)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	ip("link", "set", peer, "netns", n.name)
	ip("addr", "add", vmGatewayIP+"/24", "dev", host)
	ip("link", "set", host, "up")
	n.run("ip", "addr", "add", vmAddress+"/24", "dev", peer)
	n.run("ip", "link", "set", peer, "up")
	eventually(t, 10*time.Second, "the veth up", func() error {
		state, err := os.ReadFile("/sys/class/net/" + host + "/operstate")
		if err != nil || strings.TrimSpace(string(state)) != "up" {
			return fmt.Errorf("%s: %q %v", host, state, err)
		}
		return nil
	})
}

// tcpForwarder relays connections from its address to target, and can cut them all.
type tcpForwarder struct {
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func forwardTCP(t *testing.T, addr, target string) *tcpForwarder {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &tcpForwarder{conns: map[net.Conn]bool{}}
	t.Cleanup(f.drop)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			go func() {
				d, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				f.mu.Lock()
				f.conns[c], f.conns[d] = true, true
				f.mu.Unlock()
				go func() { _, _ = io.Copy(d, c); d.Close() }()
				_, _ = io.Copy(c, d)
				c.Close()
			}()
		}
	}()
	return f
}

func (f *tcpForwarder) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
		delete(f.conns, c)
	}
}

// stubResolver answers A for one name and NXDOMAIN for the rest, on UDP and TCP at addr.
type stubResolver struct{ seen atomic.Int64 }

func (r *stubResolver) count() int64 { return r.seen.Load() }

func startStubResolver(t *testing.T, addr, name, ip string) *stubResolver {
	t.Helper()
	r := &stubResolver{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		if strings.EqualFold(q.Question[0].Name, name) {
			r.seen.Add(1)
			if q.Question[0].Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
			}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	udp, tcp := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: l, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return r
}

func writeCorefile(t *testing.T, corefile string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// getentAddrs is the set of addresses in `getent ahosts` output, in order.
func getentAddrs(out string) []string {
	var addrs []string
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && net.ParseIP(f[0]) != nil && !seen[f[0]] {
			seen[f[0]] = true
			addrs = append(addrs, f[0])
		}
	}
	return addrs
}

// scrapeMetric reads one sample from a Prometheus endpoint; 0 when it is absent.
func scrapeMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	body := metricsBody(t, addr)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
