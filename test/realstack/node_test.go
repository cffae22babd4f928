//go:build linux

package realstack

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const nodeTestManifests = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: hostnet, namespace: nodetest}
spec:
  selector: {matchLabels: {app: hostnet}}
  template:
    metadata: {labels: {app: hostnet}}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: ` + BusyboxImageRef + `
        imagePullPolicy: Never
        command: ["sleep", "3600"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: nodetest}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: ` + BusyboxImageRef + `
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) >/www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: nodetest}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: nodetest}
spec:
  replicas: 1
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: ` + BusyboxImageRef + `
        imagePullPolicy: Never
        command: ["sleep", "3600"]
`

// TestNodeRunsPods starts a node and shows that it registers, runs a hostNetwork DaemonSet pod and
// Deployment pods on the pod network with the kubelet's DNS settings, and that kube-proxy makes a
// ClusterIP Service answer from a pod; then that the node stops without leftovers and starts again.
func TestNodeRunsPods(t *testing.T) {
	st := Start(t, Options{WithoutIstiod: true})
	busybox := BusyboxImage(t, t.TempDir())
	begin := time.Now()
	node := StartNode(t, st, NodeOptions{Name: "node-a", Images: []string{busybox}})
	cold := time.Since(begin)

	manifests := filepath.Join(t.TempDir(), "pods.yaml")
	if err := os.WriteFile(manifests, []byte(nodeTestManifests), 0o644); err != nil {
		t.Fatal(err)
	}
	const ns = "nodetest"
	if _, err := node.Kubectl("create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	if _, err := node.Kubectl("apply", "-f", manifests); err != nil {
		t.Fatal(err)
	}
	hostnet, err := node.WaitPods(ns, "app=hostnet", 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	web, err := node.WaitPods(ns, "app=web", 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	client, err := node.WaitPods(ns, "app=client", 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pods running %v after kubectl apply", time.Since(applied).Round(time.Millisecond))
	if ip := hostnet[0].Status.PodIP; ip != node.NodeIP.String() {
		t.Errorf("hostNetwork pod %s has IP %s, want the node's %s", hostnet[0].Name, ip, node.NodeIP)
	}
	for _, p := range []string{web[0].Status.PodIP, client[0].Status.PodIP} {
		if a, err := netip.ParseAddr(p); err != nil || !node.PodCIDR.Contains(a) {
			t.Errorf("pod IP %q is not in the pod network %s", p, node.PodCIDR)
		}
	}

	// The kubelet's volume mounts (the pods' service account tokens) and containerd's exist in the
	// node's mount namespace only.
	mounts, err := node.Exec("cat", "/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), filepath.Join(node.Dir, "kubelet", "pods")) {
		t.Errorf("no kubelet volume mounts in the node's mount namespace:\n%s", mounts)
	}
	if m := mountsUnder(node.Dir); len(m) > 0 {
		t.Errorf("the node's mounts show on the host: %v", m)
	}

	exec := func(pod string, cmd ...string) (string, error) {
		return node.Kubectl(append([]string{"exec", "-n", ns, pod, "--"}, cmd...)...)
	}

	t.Run("resolv.conf", func(t *testing.T) {
		out, err := exec(client[0].Name, "cat", "/etc/resolv.conf")
		if err != nil {
			t.Fatal(err)
		}
		servers, search := resolvConf(out)
		if !slices.Equal(servers, []string{ClusterDNS}) {
			t.Errorf("pod network pod: nameservers %v, want [%s]:\n%s", servers, ClusterDNS, out)
		}
		if want := []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"}; !slices.Equal(search, want) {
			t.Errorf("pod network pod: search %v, want %v:\n%s", search, want, out)
		}
		// dnsPolicy ClusterFirst on the host network means the node's own resolv.conf.
		out, err = exec(hostnet[0].Name, "cat", "/etc/resolv.conf")
		if err != nil {
			t.Fatal(err)
		}
		if servers, _ := resolvConf(out); !slices.Equal(servers, []string{node.Nameserver}) {
			t.Errorf("hostNetwork pod: nameservers %v, want the kubelet's resolv.conf's [%s]:\n%s", servers, node.Nameserver, out)
		}
	})

	t.Run("clusterIP", func(t *testing.T) {
		ctx, cancel := opContext()
		defer cancel()
		svc, err := st.Kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// An HTTP request through busybox nc: Debian's static busybox wget segfaults (exit 139), even on
		// the host.
		get := "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 " + svc.Spec.ClusterIP + " 80"
		url := "http://" + svc.Spec.ClusterIP + "/"
		want := "hello from " + web[0].Name
		for _, from := range []string{client[0].Name, hostnet[0].Name} {
			begin := time.Now()
			var out string
			for {
				out, err = exec(from, "sh", "-c", get)
				if err == nil && strings.Contains(out, want) {
					break
				}
				if time.Since(begin) > 30*time.Second {
					iptables, _ := node.Exec("iptables-save", "-t", "nat")
					t.Fatalf("from pod %s: GET %s: %q, %v\nkube-proxy: %s\nnat table:\n%s", from, url, out, err,
						node.logTail("kube-proxy", 10, isErrorLine), iptables)
				}
				time.Sleep(500 * time.Millisecond)
			}
			_, body, _ := strings.Cut(out, "\r\n\r\n")
			t.Logf("from pod %s: %s answered %q through kube-proxy (%v)", from, url, strings.TrimSpace(body), time.Since(begin).Round(time.Millisecond))
		}
		// A server on the host's loopback, as the stack's are, reached from a pod through a Service.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the host") })}
		go srv.Serve(l)
		defer srv.Close()
		if err := node.ExposeService(ns, "host", map[int]string{8000: l.Addr().String()}); err != nil {
			t.Fatal(err)
		}
		hostSvc, err := st.Kube.CoreV1().Services(ns).Get(ctx, "host", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for begin := time.Now(); ; time.Sleep(300 * time.Millisecond) {
			out, err := exec(client[0].Name, "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "+hostSvc.Spec.ClusterIP+" 8000")
			if err == nil && strings.Contains(out, "hello from the host") {
				break
			}
			if time.Since(begin) > 30*time.Second {
				t.Fatalf("Service %s:8000 (ExposeService to %s) from a pod: %q, %v", hostSvc.Spec.ClusterIP, l.Addr(), out, err)
			}
		}

		// In-cluster clients reach the API server through the kubernetes Service.
		if out, err := exec(client[0].Name, "sh", "-c", "nc -w 3 10.96.0.1 443 </dev/null && echo connected"); err != nil || !strings.Contains(out, "connected") {
			t.Errorf("kubernetes Service 10.96.0.1:443 from a pod: %q, %v", out, err)
		}
	})

	// What the node refuses comes back at once, naming the pod, the container and the reason.
	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct{ name, image, command, want string }{
			{"noimage", "realstack.local/missing:1", "true", "ErrImageNeverPull"},
			{"crash", BusyboxImageRef, "echo cannot start: no config >&2; exit 3", "CrashLoopBackOff"},
		} {
			// The readiness probe keeps the crashing container from counting as ready in the moment
			// before it exits.
			err := node.Apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: %[3]s
        imagePullPolicy: Never
        command: ["sh", "-c", %[4]q]
        readinessProbe: {exec: {command: ["true"]}, initialDelaySeconds: 30}
`, c.name, ns, c.image, c.command))
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			_, err = node.WaitPods(ns, "app="+c.name, 1, time.Minute)
			if err == nil {
				t.Fatalf("%s: pod ran", c.name)
			}
			msg := err.Error()
			if c.name == "crash" && !strings.Contains(msg, "cannot start: no config") {
				t.Errorf("crash: the error does not quote the container's log:\n%s", msg)
			}
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, "pod "+ns+"/"+c.name+"-") || time.Since(begin) > 50*time.Second {
				t.Errorf("%s: after %v, want an error naming the pod and %s:\n%s", c.name, time.Since(begin).Round(time.Millisecond), c.want, msg)
			}
			first, _, _ := strings.Cut(msg, "\n")
			t.Logf("%s: refused after %v: %s", c.name, time.Since(begin).Round(time.Millisecond), first)
			if _, err := node.Kubectl("delete", "deployment", "-n", ns, c.name); err != nil {
				t.Fatal(err)
			}
		}
	})

	// Stop, check nothing is left, and start again: the warm start.
	netns, veth, cgroup := node.NetNS, node.hostVeth, node.Cgroup
	node.Stop()
	if _, err := os.Stat(filepath.Join("/run/netns", netns)); err == nil {
		t.Errorf("netns %s left after Stop", netns)
	}
	if err := run("ip", "link", "show", veth); err == nil {
		t.Errorf("veth %s left after Stop", veth)
	}
	for _, h := range cgroupHierarchies() {
		if _, err := os.Stat(filepath.Join(h, cgroup)); err == nil {
			t.Errorf("cgroup %s left after Stop", filepath.Join(h, cgroup))
		}
	}
	// The old DaemonSet pod's status says Running: make the DaemonSet controller start a new one.
	if _, err := node.Kubectl("delete", "pod", "-n", ns, "-l", "app=hostnet", "--grace-period=0", "--force"); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	again := StartNode(t, st, NodeOptions{Name: "node-a", Images: []string{busybox}})
	warm := time.Since(begin)
	if _, err := again.WaitPods(ns, "app=hostnet", 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("node start (StartNode until Ready and kube-proxy synced): cold %v, warm %v", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
}

// resolvConf returns the nameserver and search lists of a resolv.conf.
func resolvConf(s string) (servers, search []string) {
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search":
			search = f[1:]
		}
	}
	return servers, search
}
