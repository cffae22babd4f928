//go:build linux

package realstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/need"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PauseImage is the sandbox image of every pod on a node: our own pause program (./pause), imported
// under the name the node's containerd config gives as sandbox_image. No registry is reachable.
const PauseImage = "realstack.local/pause:1"

// ClusterDNS is the kubelet's clusterDNS: the node-local address NodeLocal DNSCache documents.
const ClusterDNS = "169.254.20.10"

// NodeOptions tune StartNode. The zero value is a node named realstack-node.
type NodeOptions struct {
	// Name is the Node's name (the kubelet's --hostname-override). Default "realstack-node".
	Name string
	// Nameserver is the only line of the resolv.conf the kubelet reads (the upstream of pods with
	// dnsPolicy Default and of hostNetwork pods). Default: the host end of the node's veth
	// (Node.HostIP), where a test can serve a stub upstream; never the machine's resolvers.
	Nameserver string
	// Images are image archives (docker-archive tarballs, see WriteImageArchive) imported before the
	// kubelet starts, so that pods with imagePullPolicy Never or IfNotPresent find them.
	Images []string
	// ClusterDNS overrides the kubelet's clusterDNS (default ClusterDNS).
	ClusterDNS string
}

// Node is a Kubernetes node beside a Stack: containerd, the kubelet and kube-proxy (iptables mode)
// in a network namespace of their own, joined to the host by a veth pair; CNI bridge networking for
// pods; kube-controller-manager and kube-scheduler on the host (Stack.StartControllers). The node's
// processes also share a private mount namespace in which /run and /var/lib are fresh tmpfs and
// /var/log is <Dir>/log, so that every mount the kubelet and containerd make, every pod network
// namespace and every runc state file goes away with them; nothing of the node outlives Stop.
type Node struct {
	Name       string
	Dir        string       // <Stack.Dir>/node-<Name>: configs, kubelet and containerd roots; logs are <Stack.Dir>/<Name>-<component>.log
	NetNS      string       // `ip netns` name of the node's network namespace
	HostIP     netip.Addr   // host end of the veth: the API server is reachable from the node here
	NodeIP     netip.Addr   // node end: the Node's InternalIP and its hostNetwork pods' address
	PodCIDR    netip.Prefix // the CNI bridge's subnet
	Nameserver string       // the kubelet's resolv.conf nameserver
	Socket     string       // containerd's socket
	Kubeconfig string       // what the kubelet and kube-proxy use (the API server through HostIP)
	Cgroup     string       // the kubelet's cgroupRoot; pods' cgroups are under it in every hierarchy

	s        *Stack
	t        testing.TB
	opts     NodeOptions
	paths    NodePaths
	hostVeth string

	mu         sync.Mutex
	holder     *process // keeps the node's network and mount namespaces
	containerd *process
	kubelet    *process
	proxy      *process
	listeners  []net.Listener    // Expose's
	conns      map[net.Conn]bool // forwarded connections; nil once stopped
	stopOnce   sync.Once
}

var nodeNetNSRE = regexp.MustCompile(`^rsn(\d+)-(\d+)$`)

// StartNode starts a node and returns when its Node is Ready and kube-proxy has written its rules.
// It needs root, containerd, runc, iptables, ip and nsenter, and the binaries build.sh caches; it
// skips the test without them (fails with MESHDNS_REQUIRE_STACK=1 / MESHDNS_REQUIRE_TOOLS=1). The node
// is stopped when the test ends (or by Stop).
func StartNode(t testing.TB, s *Stack, opts NodeOptions) *Node {
	t.Helper()
	need.Root(t, "a Kubernetes node (network namespaces, mounts, cgroups)")
	for _, tool := range []string{"containerd", "ctr", "runc", "iptables", "iptables-save", "ip", "nsenter", "unshare", "mount"} {
		need.Tool(t, tool)
	}
	paths, err := NodeBinaries()
	if err != nil {
		need.Skip(t, need.Stack, err.Error())
	}
	if opts.Name == "" {
		opts.Name = "realstack-node"
	}
	if opts.ClusterDNS == "" {
		opts.ClusterDNS = ClusterDNS
	}
	n := &Node{Name: opts.Name, Dir: filepath.Join(s.Dir, "node-"+opts.Name), s: s, t: t, opts: opts, paths: paths, conns: map[net.Conn]bool{}}
	cleanStaleNodes(t)
	_ = os.RemoveAll(n.Dir) // a node started again under the same name starts afresh
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var times []string
	phase := func(name string, f func() error) error {
		b := time.Now()
		err := f()
		times = append(times, fmt.Sprintf("%s %v", name, time.Since(b).Round(time.Millisecond)))
		return err
	}
	t.Cleanup(n.Stop)
	err = func() error {
		if err := phase("network", n.makeNetwork); err != nil {
			return err
		}
		if err := phase("files", n.writeFiles); err != nil {
			return err
		}
		if err := phase("pause image", n.buildPause); err != nil {
			return err
		}
		if err := phase("namespaces", func() error { return n.startHolder(ctx) }); err != nil {
			return err
		}
		if err := phase("containerd", func() error { return n.startContainerd(ctx) }); err != nil {
			return err
		}
		err := phase("images", func() error {
			for _, img := range append([]string{filepath.Join(n.Dir, "pause.tar")}, opts.Images...) {
				if err := n.ImportImage(img); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := phase("controllers", s.StartControllers); err != nil {
			return err
		}
		if err := s.SetAPIServerEndpoint(n.HostIP.String(), s.ports["apiserver"]); err != nil {
			return err
		}
		if err := phase("kubelet", func() error { return n.startKubelet(ctx) }); err != nil {
			return err
		}
		return phase("kube-proxy", func() error { return n.startProxy(ctx) })
	}()
	t.Logf("realstack: node %s: %s", n.Name, strings.Join(times, ", "))
	if err != nil {
		t.Fatalf("realstack: node %s: %v", n.Name, err)
	}
	t.Logf("realstack: node %s ready in %v (netns %s, node IP %s, pods %s)", n.Name, time.Since(begin).Round(time.Millisecond), n.NetNS, n.NodeIP, n.PodCIDR)
	return n
}

// makeNetwork creates the node's network namespace and a veth pair to the host on the first free
// 10.250.i.0/30 (host .1, node .2); pods get 10.251.i.0/24.
func (n *Node) makeNetwork() error {
	pid := os.Getpid()
	var last error
	for i := 1; i < 250; i++ {
		veth := fmt.Sprintf("rsh%d", i)
		if _, err := net.InterfaceByName(veth); err == nil {
			continue
		}
		ns := fmt.Sprintf("rsn%d-%d", i, pid)
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			continue
		}
		if err := run("ip", "netns", "add", ns); err != nil {
			last = err
			continue
		}
		// Another test binary may take the same i at the same moment: the veth name then clashes.
		if err := run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			_ = run("ip", "netns", "del", ns)
			last = err
			continue
		}
		n.NetNS, n.hostVeth = ns, veth
		n.HostIP = netip.AddrFrom4([4]byte{10, 250, byte(i), 1})
		n.NodeIP = netip.AddrFrom4([4]byte{10, 250, byte(i), 2})
		n.PodCIDR = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, byte(i), 0}), 24)
		n.Cgroup = "/realstack-" + ns
		for _, args := range [][]string{
			{"ip", "addr", "add", n.HostIP.String() + "/30", "dev", veth},
			{"ip", "link", "set", veth, "up"},
			{"ip", "-n", ns, "addr", "add", n.NodeIP.String() + "/30", "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
			{"ip", "-n", ns, "route", "add", "default", "via", n.HostIP.String()},
		} {
			if err := run(args...); err != nil {
				return err
			}
		}
		return n.startAPIProxy()
	}
	return fmt.Errorf("no free 10.250.i.0/30 for a veth: %v", last)
}

// startAPIProxy forwards HostIP:<API server port> to the API server on 127.0.0.1: the node's
// processes and pods (through the kubernetes Service) reach it there, and its serving certificate,
// made for 127.0.0.1, also names kubernetes.default.svc and 10.96.0.1, which they verify instead.
func (n *Node) startAPIProxy() error {
	_, err := n.Expose(n.s.ports["apiserver"], n.s.APIServer[len("https://"):])
	if err != nil {
		return fmt.Errorf("API server proxy: %w", err)
	}
	return nil
}

// Expose forwards TCP connections to HostIP:port (from the node, its pods, or the host) to target, an
// address on the host such as the stack's istiod on 127.0.0.1, and returns HostIP:port. The stack's
// servers listen on loopback only; this is how the node reaches them. It ends with the node.
func (n *Node) Expose(port int, target string) (string, error) {
	addr := net.JoinHostPort(n.HostIP.String(), strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	if n.conns == nil {
		n.mu.Unlock()
		l.Close()
		return "", fmt.Errorf("node %s is stopped", n.Name)
	}
	n.listeners = append(n.listeners, l)
	n.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go n.forward(c, target)
		}
	}()
	return addr, nil
}

// ExposeService makes Service ns/name (selector-less ClusterIP, created or updated) lead to servers on
// the host: each port P of ports is forwarded from HostIP:P (see Expose) to ports[P], and the
// Service's EndpointSlice lists HostIP with those ports. Pods then reach, say, the stack's istiod as
// istiod.istio-system.svc:15012 (with ports {15012: Stack.IstiodSecureGRPC}).
func (n *Node) ExposeService(ns, name string, ports map[int]string) error {
	if err := n.s.EnsureNamespace(ns); err != nil {
		return err
	}
	ctx, cancel := opContext()
	defer cancel()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	var slicePorts []discoveryv1.EndpointPort
	for _, p := range slices.Sorted(maps.Keys(ports)) {
		if _, err := n.Expose(p, ports[p]); err != nil {
			return fmt.Errorf("service %s/%s: %w", ns, name, err)
		}
		portName, port, proto := "tcp-"+strconv.Itoa(p), int32(p), corev1.ProtocolTCP
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: portName, Port: port, Protocol: proto, TargetPort: intstr.FromInt32(port)})
		slicePorts = append(slicePorts, discoveryv1.EndpointPort{Name: &portName, Port: &port, Protocol: &proto})
	}
	services := n.s.Kube.CoreV1().Services(ns)
	if old, err := services.Get(ctx, name, metav1.GetOptions{}); err == nil {
		old.Spec.Ports = svc.Spec.Ports
		if _, err := services.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("service %s/%s: %w", ns, name, err)
		}
	} else if _, err := services.Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	ready := true
	return n.s.putSlice(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-host", Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "realstack",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{n.HostIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       slicePorts,
	})
}

func (n *Node) forward(c net.Conn, to string) {
	d, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	n.mu.Lock()
	if n.conns == nil { // stopped
		n.mu.Unlock()
		c.Close()
		d.Close()
		return
	}
	n.conns[c], n.conns[d] = true, true
	n.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(d, c)
	go pipe(c, d)
	<-done
	<-done
	c.Close()
	d.Close()
	n.mu.Lock()
	delete(n.conns, c)
	delete(n.conns, d)
	n.mu.Unlock()
}

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.Dir}, parts...)...)
}

// kernel tunables the kubelet sets at start (vm.overcommit_memory=1, kernel.panic=10, ...): they are
// global, so the node's mount namespace gets a copy of each to write to, and the machine keeps its own.
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// holderScript runs in the node's new mount namespace (a slave of the host's: the host's mounts show,
// the node's never leave) and then becomes the pause process that keeps the namespaces alive.
const holderScript = `set -eu
d=$1
mount -t tmpfs -o mode=0755 realstack-run /run
mount -t tmpfs -o mode=0755 realstack-varlib /var/lib
mount --bind "$d/log" /var/log
for k in ` + "$SYSCTLS" + `; do
	f="$d/sysctl/$(echo "$k" | tr / .)"
	cat "/proc/sys/$k" >"$f"
	mount --bind "$f" "/proc/sys/$k"
done
echo 1 >/proc/sys/net/ipv4/ip_forward
echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables
touch "$d/namespaces-ready"
exec "$2"
`

func (n *Node) writeFiles() error {
	for _, d := range []string{"log", "sysctl", "cni/net.d", "cni/ipam", "containerd", "kubelet", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	n.Nameserver = n.opts.Nameserver
	if n.Nameserver == "" {
		n.Nameserver = n.HostIP.String()
	}
	n.Socket = n.path("containerd", "containerd.sock")
	n.Kubeconfig = n.path("kubeconfig")
	ca, err := os.ReadFile(filepath.Join(n.s.Dir, "apiserver", "apiserver.crt"))
	if err != nil {
		return err
	}
	containerdConfig, err := n.containerdConfig()
	if err != nil {
		return err
	}
	files := map[string]string{
		"resolv.conf": "nameserver " + n.Nameserver + "\n",
		"holder.sh":   strings.ReplaceAll(holderScript, "$SYSCTLS", strings.Join(kubeletSysctls, " ")),
		"kubeconfig":  adminKubeconfig("https://"+net.JoinHostPort(n.HostIP.String(), strconv.Itoa(n.s.ports["apiserver"])), ca, n.s.AdminToken, "kubernetes.default.svc"),
		"cni/net.d/10-realstack.conflist": fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "realstack",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR.String(), n.path("cni", "ipam")),
		"containerd/config.toml": containerdConfig,
		"kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDNS: [%s]
clusterDomain: cluster.local
resolvConf: %s
failSwapOn: false
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
  imagefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: %s
volumePluginDir: %s
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
maxPods: 50
rotateCertificates: false
serverTLSBootstrap: false
`, n.Cgroup, n.Socket, n.NodeIP, n.opts.ClusterDNS, n.path("resolv.conf"), n.path("pod-logs"), n.path("volume-plugins")),
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, n.Kubeconfig, n.Name, n.PodCIDR, n.NodeIP),
	}
	for name, data := range files {
		if err := os.WriteFile(n.path(name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// containerdConfig is `containerd config default` with every path moved under Dir (or into the node's
// own /run), the sandbox image ours and the CNI plugins and config ours. Each edit must match.
func (n *Node) containerdConfig() (string, error) {
	out, err := exec.Command("containerd", "config", "default").Output()
	if err != nil {
		return "", fmt.Errorf("containerd config default: %w", err)
	}
	cfg := string(out)
	for _, e := range []struct{ re, with string }{
		{`(?m)^root = ".*"$`, fmt.Sprintf("root = %q", n.path("containerd", "root"))},
		{`(?m)^state = ".*"$`, fmt.Sprintf("state = %q", n.path("containerd", "state"))},
		{`(?m)^(\s*)address = "/run/containerd/containerd.sock"$`, fmt.Sprintf("${1}address = %q", n.Socket)},
		{`(?m)^(\s*)sandbox_image = ".*"$`, fmt.Sprintf("${1}sandbox_image = %q", PauseImage)},
		{`(?m)^(\s*)bin_dir = ".*"$`, fmt.Sprintf("${1}bin_dir = %q", n.paths.CNIDir)},
		{`(?m)^(\s*)conf_dir = ".*"$`, fmt.Sprintf("${1}conf_dir = %q", n.path("cni", "net.d"))},
		{`(?m)^(\s*)path = "/opt/containerd"$`, fmt.Sprintf("${1}path = %q", n.path("containerd", "opt"))},
		{`(?m)^(\s*)SystemdCgroup = .*$`, "${1}SystemdCgroup = false"},
		{`(?m)^(\s*)snapshotter = ".*"$`, `${1}snapshotter = "overlayfs"`},
		// Lowering an oom_score_adj (the kubelet asks -998 for sandboxes) needs CAP_SYS_RESOURCE, which
		// some machines (this kind of VM among them) do not give even to root: runc then fails with
		// "failed to update /proc/self/oom_score_adj". Restricted, containerd caps it at its own value.
		{`(?m)^(\s*)restrict_oom_score_adj = .*$`, "${1}restrict_oom_score_adj = true"},
	} {
		re := regexp.MustCompile(e.re)
		if !re.MatchString(cfg) {
			return "", fmt.Errorf("containerd config default: no line matches %s (another containerd version?)", e.re)
		}
		cfg = re.ReplaceAllString(cfg, e.with)
	}
	return cfg, nil
}

// buildPause compiles ./pause (static, CGO_ENABLED=0) and packs it as PauseImage.
func (n *Node) buildPause() error {
	bin := n.path("pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/meshdns/meshdns/test/realstack/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build pause: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	return WriteImageArchive(n.path("pause.tar"), PauseImage, ImageConfig{Entrypoint: []string{"/pause"}},
		[]ImageFile{{Name: "pause", Mode: 0o755, Data: data}})
}

// startHolder makes the cgroup root and the namespaces every other node process joins.
func (n *Node) startHolder(ctx context.Context) error {
	if err := makeCgroup(n.Cgroup); err != nil {
		return err
	}
	p, err := n.s.spawn(n.Name+"-namespaces", "nsenter", n.Dir, nodeEnv(n.Dir),
		"--net=/run/netns/"+n.NetNS, "--", "unshare", "--mount", "--propagation", "slave", "--",
		"sh", n.path("holder.sh"), n.Dir, n.path("pause"))
	if err != nil {
		return err
	}
	n.holder = p
	return waitFor(ctx, p, func() error {
		_, err := os.Stat(n.path("namespaces-ready"))
		return err
	})
}

// spawnIn starts a node process inside the holder's network and mount namespaces.
func (n *Node) spawnIn(component, bin string, args ...string) (*process, error) {
	pid := strconv.Itoa(n.holder.cmd.Process.Pid)
	return n.s.spawn(n.Name+"-"+component, "nsenter", n.Dir, nodeEnv(n.Dir),
		append([]string{"--target", pid, "--net", "--mount", "--", bin}, args...)...)
}

func (n *Node) startContainerd(ctx context.Context) error {
	p, err := n.spawnIn("containerd", "containerd", "--config", n.path("containerd", "config.toml"))
	if err != nil {
		return err
	}
	n.containerd = p
	return waitFor(ctx, p, func() error {
		_, err := n.ctr("version")
		return err
	})
}

func (n *Node) ctr(args ...string) ([]byte, error) {
	cmd := exec.Command("ctr", append([]string{"--address", n.Socket, "--timeout", "60s", "--namespace", "k8s.io"}, args...)...)
	cmd.Env = nodeEnv(n.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// ImportImage imports an image archive (docker-archive or OCI tarball) into the node's containerd,
// where the kubelet finds it under the names in the archive.
func (n *Node) ImportImage(archive string) error {
	if _, err := n.ctr("images", "import", archive); err != nil {
		return fmt.Errorf("containerd on %s: import %s: %w", n.Name, archive, err)
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context) error {
	p, err := n.spawnIn("kubelet", n.paths.Kubelet,
		"--config="+n.path("kubelet.yaml"),
		"--kubeconfig="+n.Kubeconfig,
		"--root-dir="+n.path("kubelet"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.NodeIP.String(),
		"--v=2")
	if err != nil {
		return err
	}
	n.kubelet = p
	return n.waitReady(ctx, time.Now().Truncate(time.Second))
}

// waitReady waits until this kubelet reports the Node Ready (a heartbeat since it started: a Node
// left by an earlier kubelet of the same name still says Ready); the error says which condition and
// which log lines.
func (n *Node) waitReady(ctx context.Context, since time.Time) error {
	for {
		if err := n.alive(); err != nil {
			return err
		}
		node, err := n.s.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err == nil {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(since) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready: %s", n.Name, n.Diagnose("", ""))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) startProxy(ctx context.Context) error {
	p, err := n.spawnIn("kube-proxy", n.paths.KubeProxy, "--config="+n.path("kube-proxy.yaml"), "--v=2")
	if err != nil {
		return err
	}
	n.proxy = p
	// Ready when the kubernetes Service has its rules: kube-proxy has synced once.
	for {
		if err := n.alive(); err != nil {
			return err
		}
		out, _ := n.Exec("iptables-save", "-t", "nat")
		if strings.Contains(string(out), "default/kubernetes:https") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-proxy on %s wrote no rules for default/kubernetes: %s", n.Name, n.logTail("kube-proxy", 15, isErrorLine))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Exec runs a command in the node's network and mount namespaces (iptables-save, ip route, ...).
func (n *Node) Exec(args ...string) ([]byte, error) {
	n.mu.Lock()
	h := n.holder
	n.mu.Unlock()
	if h == nil || h.exited() {
		return nil, fmt.Errorf("node %s is not running", n.Name)
	}
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(h.cmd.Process.Pid), "--net", "--mount", "--"}, args...)...)
	cmd.Env = nodeEnv(n.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("on node %s: %s: %v: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Kubectl runs the cached kubectl against the stack (admin kubeconfig) and returns its output; the
// error carries the output too.
func (n *Node) Kubectl(args ...string) (string, error) {
	cmd := exec.Command(n.paths.Kubectl, append([]string{"--kubeconfig=" + n.s.Kubeconfig}, args...)...)
	cmd.Env = minimalEnv(n.s.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Apply applies a YAML manifest with kubectl (server-side, so that big objects such as CRDs fit).
func (n *Node) Apply(manifest string) error {
	cmd := exec.Command(n.paths.Kubectl, "--kubeconfig="+n.s.Kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-")
	cmd.Env, cmd.Stdin = minimalEnv(n.s.Dir), strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// alive says which node process exited, with the last lines of its log.
func (n *Node) alive() error {
	n.mu.Lock()
	procs := []*process{n.holder, n.containerd, n.kubelet, n.proxy}
	n.mu.Unlock()
	for _, p := range procs {
		if p != nil && p.exited() {
			comp := strings.TrimPrefix(p.name, n.Name+"-")
			return fmt.Errorf("%s on node %s exited: %v; last lines of %s.log:\n%s", comp, n.Name, p.err, p.name, n.logTail(comp, 15, nil))
		}
	}
	return nil
}

var klogErrorRE = regexp.MustCompile(`^[EF]\d{4} `)

// isErrorLine picks the error lines of a klog (kubelet, kube-proxy) or logrus (containerd) log.
func isErrorLine(l string) bool {
	return klogErrorRE.MatchString(l) || strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal")
}

// logTail returns the last lines of a node component's log ("kubelet", "containerd", "kube-proxy";
// or a Stack process such as "kube-scheduler") for which keep is true (nil keeps all).
func (n *Node) logTail(component string, lines int, keep func(string) bool) string {
	file := filepath.Join(n.s.Dir, n.Name+"-"+component+".log")
	if _, err := os.Stat(file); err != nil {
		file = filepath.Join(n.s.Dir, component+".log")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if keep == nil || keep(l) {
			out = append(out, l)
		}
	}
	if len(out) > lines {
		out = out[len(out)-lines:]
	}
	if len(out) == 0 {
		return "(nothing)"
	}
	return strings.Join(out, "\n")
}

// Diagnose describes what stands in the way on this node: the Node's conditions, and for pod ns/name
// (when given) its status, its events and the kubelet's and containerd's log lines naming it; then
// the last error lines of the kubelet, containerd and kube-proxy, and which of them exited.
func (n *Node) Diagnose(ns, pod string) string {
	ctx, cancel := opContext()
	defer cancel()
	var b strings.Builder
	if err := n.alive(); err != nil {
		fmt.Fprintf(&b, "%v\n", err)
	}
	if node, err := n.s.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); err != nil {
		fmt.Fprintf(&b, "node %s: %v (the kubelet did not register it)\n", n.Name, err)
	} else {
		for _, c := range node.Status.Conditions {
			fmt.Fprintf(&b, "node %s: %s=%s %s: %s\n", n.Name, c.Type, c.Status, c.Reason, c.Message)
		}
		for _, taint := range node.Spec.Taints {
			fmt.Fprintf(&b, "node %s: taint %s\n", n.Name, taint.ToString())
		}
	}
	if pod != "" {
		b.WriteString(n.describePod(ctx, ns, pod))
		fmt.Fprintf(&b, "kubelet log lines naming %s:\n%s\n", pod, n.logTail("kubelet", 10, func(l string) bool { return strings.Contains(l, pod) }))
	}
	for _, c := range []string{"kubelet", "containerd", "kube-proxy"} {
		fmt.Fprintf(&b, "last errors of %s on %s:\n%s\n", c, n.Name, n.logTail(c, 8, isErrorLine))
	}
	return b.String()
}

// describePod is pod ns/name's phase, unmet conditions, container states and events.
func (n *Node) describePod(ctx context.Context, ns, name string) string {
	var b strings.Builder
	p, err := n.s.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("pod %s/%s: %v\n", ns, name, err)
	}
	fmt.Fprintf(&b, "pod %s/%s: phase %s on node %q\n", ns, name, p.Status.Phase, p.Spec.NodeName)
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			fmt.Fprintf(&b, "pod %s/%s: %s=%s %s %s\n", ns, name, c.Type, c.Status, c.Reason, c.Message)
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "pod %s/%s container %s: %s (restarts %d)\n", ns, name, cs.Name, stateString(cs.State), cs.RestartCount)
		if cs.LastTerminationState.Terminated != nil {
			fmt.Fprintf(&b, "pod %s/%s container %s: last %s\n", ns, name, cs.Name, stateString(cs.LastTerminationState))
			tail := int64(5)
			logs, err := n.s.Kube.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: cs.Name, Previous: true, TailLines: &tail}).DoRaw(ctx)
			if err == nil {
				fmt.Fprintf(&b, "pod %s/%s container %s: last lines of its previous run:\n%s\n", ns, name, cs.Name, strings.TrimSpace(string(logs)))
			}
		}
	}
	b.WriteString(n.events(ctx, ns, "involvedObject.name="+name))
	return b.String()
}

// events lists the events of ns matching a field selector, oldest first, one per line.
func (n *Node) events(ctx context.Context, ns, selector string) string {
	evs, err := n.s.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		return fmt.Sprintf("events: %v\n", err)
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "event %s %s/%s: %s %s: %s (x%d, from %s)\n", e.Type, strings.ToLower(e.InvolvedObject.Kind), e.InvolvedObject.Name,
			e.Reason, e.Source.Component, strings.TrimSpace(e.Message), max(e.Count, 1), e.Source.Host)
	}
	return b.String()
}

func stateString(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.Format(time.RFC3339)
	case s.Waiting != nil:
		return "waiting: " + s.Waiting.Reason + ": " + s.Waiting.Message
	case s.Terminated != nil:
		return fmt.Sprintf("terminated: %s (exit %d): %s", s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.Message)
	}
	return "no state yet"
}

// reasons that no wait will cure: a WaitPods ends at once on them.
var fatalReasons = map[string]bool{
	"ErrImageNeverPull": true, "ImagePullBackOff": true, "ErrImagePull": true, "InvalidImageName": true,
	"CrashLoopBackOff": true, "CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
}

// WaitPods waits until count pods of ns matching selector run on this node with every container
// ready, and returns them. It gives up at once when a container cannot start (an image missing, a
// crash loop, a refused config) or a node process exits, and otherwise after timeout; the error then
// names the pod, the reason and the events and log lines behind it (see Diagnose).
func (n *Node) WaitPods(ns, selector string, count int, timeout time.Duration) ([]corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := n.alive(); err != nil {
			return nil, err
		}
		ctx, cancel := opContext()
		list, err := n.s.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		cancel()
		if err != nil {
			return nil, err
		}
		var ready []corev1.Pod
		var stuck []string
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if podReady(&p) {
				ready = append(ready, p)
				continue
			}
			stuck = append(stuck, p.Name)
			if p.Status.Phase == corev1.PodFailed {
				return nil, fmt.Errorf("pod %s/%s failed: %s\n%s", ns, p.Name, p.Status.Message, n.Diagnose(ns, p.Name))
			}
			for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				if w := cs.State.Waiting; w != nil && fatalReasons[w.Reason] {
					return nil, fmt.Errorf("pod %s/%s container %s: %s: %s\n%s", ns, p.Name, cs.Name, w.Reason, w.Message, n.Diagnose(ns, p.Name))
				}
			}
			if p.Spec.NodeName != "" && time.Since(p.CreationTimestamp.Time) > 10*time.Second {
				if e := n.repeatedWarning(ns, p.Name); e != nil {
					return nil, fmt.Errorf("pod %s/%s: the kubelet keeps failing: %s: %s (x%d)\n%s", ns, p.Name, e.Reason, e.Message, e.Count, n.Diagnose(ns, p.Name))
				}
			}
		}
		if len(ready) >= count {
			return ready, nil
		}
		if time.Now().After(deadline) {
			ctx, cancel := opContext()
			defer cancel()
			var b strings.Builder
			fmt.Fprintf(&b, "%d of %d pods %s in %s ready after %v", len(ready), count, selector, ns, timeout)
			if len(list.Items) == 0 {
				// Nothing made them: the controllers' or the scheduler's side.
				fmt.Fprintf(&b, "; no pods at all. Events in %s:\n%s", ns, n.events(ctx, ns, ""))
				fmt.Fprintf(&b, "last errors of kube-controller-manager:\n%s\n", n.logTail("kube-controller-manager", 8, isErrorLine))
			}
			b.WriteString("\n")
			for _, name := range stuck {
				b.WriteString(n.describePod(ctx, ns, name))
			}
			if len(stuck) > 0 {
				b.WriteString(n.Diagnose(ns, stuck[0]))
			}
			return nil, errors.New(b.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// repeatedWarnings are the kubelet's events that, seen three times for a pod, mean it will not start
// (the sandbox, the network or a volume is refused at every retry).
var repeatedWarnings = map[string]bool{"FailedCreatePodSandBox": true, "FailedMount": true, "FailedKillPod": true, "FailedPostStartHook": true}

func (n *Node) repeatedWarning(ns, pod string) *corev1.Event {
	ctx, cancel := opContext()
	defer cancel()
	evs, err := n.s.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",type=Warning"})
	if err != nil {
		return nil
	}
	for i, e := range evs.Items {
		if repeatedWarnings[e.Reason] && e.Count >= 3 {
			return &evs.Items[i]
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Stop stops the node and removes what it made on the machine: its processes (and the containers'
// and shims' that outlive containerd), its cgroups, its veth and network namespace. The mount
// namespace (with every mount the kubelet and containerd made) goes with its last process. The test
// fails if something could not be removed. Stop is idempotent; it runs at the end of the test.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.mu.Lock()
		procs := []*process{n.kubelet, n.proxy, n.containerd}
		holder := n.holder
		conns, listeners := n.conns, n.listeners
		n.conns = nil
		n.mu.Unlock()
		if n.t.Failed() && n.kubelet != nil {
			n.t.Logf("realstack: node %s at the failure:\n%s", n.Name, n.Diagnose("", ""))
		}
		// The kubelet first, so that nothing restarts what goes next.
		for _, p := range procs {
			p.kill()
		}
		var mntNS string
		if holder != nil {
			mntNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", holder.cmd.Process.Pid))
		}
		var errs []error
		if n.NetNS != "" {
			errs = teardownNode(n.NetNS, n.hostVeth, n.Cgroup)
		}
		holder.kill()
		for _, l := range listeners {
			l.Close()
		}
		for c := range conns {
			c.Close()
		}
		if mntNS != "" {
			if pids := pidsWithNamespace("mnt", mntNS); len(pids) > 0 {
				errs = append(errs, fmt.Errorf("processes still in the node's mount namespace: %v", pids))
			}
		}
		if m := mountsUnder(n.Dir); len(m) > 0 {
			errs = append(errs, fmt.Errorf("mounts left under %s: %v", n.Dir, m))
		}
		if err := errors.Join(errs...); err != nil {
			n.t.Errorf("realstack: stopping node %s: %v", n.Name, err)
		}
	})
}

// teardownNode kills every process of a node's cgroups and network namespace, then removes the
// cgroups, the veth and the namespace. It is also how leftovers of a killed test binary go.
func teardownNode(netns, veth, cgroup string) []error {
	var errs []error
	if err := killCgroup(cgroup); err != nil {
		errs = append(errs, err)
	}
	if fi, err := os.Stat(filepath.Join("/run/netns", netns)); err == nil {
		id := fmt.Sprintf("net:[%d]", fi.Sys().(*syscall.Stat_t).Ino)
		for try := 0; ; try++ {
			pids := pidsWithNamespace("net", id)
			if len(pids) == 0 {
				break
			}
			if try == 50 {
				errs = append(errs, fmt.Errorf("processes left in netns %s: %v", netns, pids))
				break
			}
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := removeCgroup(cgroup); err != nil {
		errs = append(errs, err)
	}
	if _, err := net.InterfaceByName(veth); err == nil {
		if err := run("ip", "link", "del", veth); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(filepath.Join("/run/netns", netns)); err == nil {
		if err := run("ip", "netns", "del", netns); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// cleanStaleNodes tears down the nodes of test binaries that died without cleaning up (SIGKILL, a
// panic in another goroutine): their netns names carry their pid.
func cleanStaleNodes(t testing.TB) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m := nodeNetNSRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		errs := teardownNode(e.Name(), "rsh"+m[1], "/realstack-"+e.Name())
		t.Logf("realstack: removed the leftovers of a node of dead process %d (netns %s): %v", pid, e.Name(), errors.Join(errs...))
	}
}

// pidsWithNamespace lists the processes whose /proc/PID/ns/<kind> link reads id ("net:[4026532...]").
func pidsWithNamespace(kind, id string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind)); err == nil && l == id {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists the host's mount points under dir (there should be none: the node mounts in
// its own namespace).
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// cgroupHierarchies lists the mount points of the machine's cgroup hierarchies (v1 controllers,
// name=systemd, and the unified one of a hybrid set-up).
func cgroupHierarchies() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		_, after, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		f, fields := strings.Fields(after), strings.Fields(l)
		if len(f) > 0 && (f[0] == "cgroup" || f[0] == "cgroup2") && len(fields) > 4 {
			out = append(out, fields[4])
		}
	}
	return out
}

// makeCgroup creates cgroup path in every hierarchy (the kubelet refuses a cgroupRoot that does not
// exist); a new cpuset gets its parent's CPUs and memory nodes, without which nothing can join it.
func makeCgroup(path string) error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
				return fmt.Errorf("cgroup %s: %w", filepath.Join(dir, f), err)
			}
		}
	}
	return nil
}

// killCgroup kills every process in cgroup path and below, in every hierarchy, until none is left.
func killCgroup(path string) error {
	for try := 0; ; try++ {
		var pids []int
		for _, h := range cgroupHierarchies() {
			_ = filepath.WalkDir(filepath.Join(h, path), func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				data, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids = append(pids, pid)
					}
				}
				return nil
			})
		}
		if len(pids) == 0 {
			return nil
		}
		if try == 50 {
			return fmt.Errorf("processes left in cgroup %s: %v", path, pids)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroup removes cgroup path and its children, deepest first, in every hierarchy.
func removeCgroup(path string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, path)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 20; try++ { // a cgroup whose last process just died can be busy a moment
				if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nodeEnv is minimalEnv with the sbin directories, where ip, iptables and mount live.
func nodeEnv(home string) []string {
	env := minimalEnv(home)
	env[0] += ":/usr/local/sbin:/usr/sbin:/sbin"
	return env
}
