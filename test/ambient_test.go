package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/ambient"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/test/realstack"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ambientStack starts the real stack with istiod in ambient mode (dual stack, so that dual-stack
// Services come with both families).
func ambientStack(t *testing.T) *realstack.Stack {
	return realstack.Start(t, realstack.Options{IstiodEnv: []string{"PILOT_ENABLE_AMBIENT=true", "ISTIO_DUAL_STACK=true"}})
}

// createSelectorService creates Service ns/name selecting app=name, with clusterIPs ("None" for a
// headless one).
func createSelectorService(t *testing.T, stack *realstack.Stack, ns, name string, clusterIPs ...string) {
	t.Helper()
	if err := stack.EnsureNamespace(ns); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if len(clusterIPs) > 0 {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = clusterIPs[0], clusterIPs
		if clusterIPs[0] != corev1.ClusterIPNone {
			for _, ip := range clusterIPs {
				f := corev1.IPv4Protocol
				if strings.Contains(ip, ":") {
					f = corev1.IPv6Protocol
				}
				svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, f)
			}
			if len(clusterIPs) > 1 {
				p := corev1.IPFamilyPolicyRequireDualStack
				svc.Spec.IPFamilyPolicy = &p
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := stack.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("service %s/%s: %v", ns, name, err)
	}
}

// createAmbientPod creates Pod ns/name labelled app=app on node "node-1" (no scheduler, no kubelet:
// spec.nodeName is set and the status a kubelet would write is patched in), running at ip, ready or
// not. istiod makes it a Workload.
func createAmbientPod(t *testing.T, stack *realstack.Stack, ns, name, app, ip string, ready bool) {
	t.Helper()
	if err := stack.EnsureNamespace(ns); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := stack.Kube.CoreV1().Pods(ns)
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:   "node-1",
			Containers: []corev1.Container{{Name: "app", Image: "realstack.invalid/none"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s: %v", ns, name, err)
	}
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}},
	}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod status %s/%s: %v", ns, name, err)
	}
}

// getJSON decodes the JSON at url into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// wireRecorder is an xds.Handler that keeps every Address resource as decoded, by name.
type wireRecorder struct {
	mu        sync.Mutex
	responses int
	workloads map[string]*ambient.Workload
	services  map[string]*ambient.Service
	errs      []error
}

func (r *wireRecorder) Apply(resp *xds.Response) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.responses++
	for _, res := range resp.Resources {
		w, s, err := ambient.DecodeAddress(res.Body.GetValue())
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s: %w", res.Name, err))
			continue
		}
		if w != nil {
			r.workloads[res.Name] = w
		} else {
			r.services[res.Name] = s
		}
	}
	for _, n := range resp.Removed {
		delete(r.workloads, n)
		delete(r.services, n)
	}
	return nil
}

func (r *wireRecorder) Rejected(err error) {}

func (r *wireRecorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.workloads {
		out = append(out, "workload "+n)
	}
	for n := range r.services {
		out = append(out, "service "+n)
	}
	sort.Strings(out)
	return out
}

var wireMetrics = xds.NewMetrics("ambientwiretest", "test")

// subscribe opens a stream to istiod as node id with metadata and returns what it receives.
func subscribe(t *testing.T, dial xds.Dial, id string, delta bool, md map[string]any) *wireRecorder {
	t.Helper()
	meta, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	c, err := xds.New(xds.Config{Dial: dial, Name: "probe " + id, Node: &core.Node{Id: id, Metadata: meta},
		TypeURL: ambient.TypeURL, Delta: delta, Subscribe: []string{"*"}, Metrics: wireMetrics})
	if err != nil {
		t.Fatal(err)
	}
	r := &wireRecorder{workloads: map[string]*ambient.Workload{}, services: map[string]*ambient.Service{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx, r); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// TestAmbientIstiodWire checks what a real istiod in ambient mode sends, the facts the ambient source
// is built on: Services named namespace/hostname with their VIPs (both families of a dual-stack
// Service, none for a headless one, 240.240.0.0/16 and 2001:2::/48 allocated to a ServiceEntry
// without addresses, wildcard hosts as they are), pods as Workloads named cluster//Pod/ns/name with
// their addresses, their Services' keys, and not-ready pods UNHEALTHY; a sidecar node id gets the
// same; on the TLS port a token must be of the node's namespace (metadata NAMESPACE), or the stream
// is refused (PermissionDenied). Seen here too, and not asserted: a state-of-the-world stream for
// Address gets a new full response to every ACK (38,566 in 8 s here), so only delta is
// usable; each Service carries canonical (istiod marks one per hostname); a ServiceEntry with DNS
// resolution also comes as a Workload with a hostname and no address.
func TestAmbientIstiodWire(t *testing.T) {
	stack := ambientStack(t)
	createSelectorService(t, stack, "default", "reviews", "10.96.50.1", "fd00:10:96::501")
	createSelectorService(t, stack, "default", "db", corev1.ClusterIPNone)
	createAmbientPod(t, stack, "default", "db-0", "db", "127.0.0.31", true)
	createAmbientPod(t, stack, "default", "db-1", "db", "127.0.0.32", false)
	if err := stack.CreateServiceEntry("default", "auto", []string{"auto.example.org"}, nil, "DNS"); err != nil {
		t.Fatal(err)
	}
	if err := stack.CreateServiceEntry("default", "wild", []string{"*.wild.example.com"}, []string{"240.0.0.9"}, "NONE"); err != nil {
		t.Fatal(err)
	}
	md := map[string]any{"NAMESPACE": "istio-system", "CLUSTER_ID": "Kubernetes", "NODE_NAME": "node-1", "INSTANCE_IPS": "127.0.0.1"}
	zt := subscribe(t, xds.Dial{Address: stack.IstiodGRPC}, "ztunnel~127.0.0.1~ztunnel-x.istio-system~istio-system.svc.cluster.local", true, md)
	sidecar := subscribe(t, xds.Dial{Address: stack.IstiodGRPC}, "sidecar~127.0.0.2~probe.default~default.svc.cluster.local", true, md)

	// On the TLS port the token's namespace must be the node's (metadata NAMESPACE).
	rootCert, tokenFile := istiodCredentials(t, stack, t.TempDir())
	secure := xds.Dial{Address: stack.IstiodSecureGRPC, CAFile: rootCert, ServerName: realstack.IstiodServerName, TokenFile: tokenFile}
	mdDefault := map[string]any{"NAMESPACE": "default", "CLUSTER_ID": "Kubernetes"}
	tlsOK := subscribe(t, secure, "ztunnel~127.0.0.4~meshdns.default~default.svc.cluster.local", true, mdDefault)
	tlsWrong := subscribe(t, secure, "ztunnel~127.0.0.5~meshdns.istio-system~istio-system.svc.cluster.local", true, md)

	const (
		reviews = "default/reviews.default.svc.cluster.local"
		db      = "default/db.default.svc.cluster.local"
		db0     = "Kubernetes//Pod/default/db-0"
		db1     = "Kubernetes//Pod/default/db-1"
	)
	eventually(t, 20*time.Second, "every object as an Address", func() error {
		zt.mu.Lock()
		defer zt.mu.Unlock()
		for _, n := range []string{reviews, db, "default/auto.example.org", "default/*.wild.example.com"} {
			if zt.services[n] == nil {
				return fmt.Errorf("no service %s", n)
			}
		}
		for _, n := range []string{db0, db1} {
			if zt.workloads[n] == nil {
				return fmt.Errorf("no workload %s", n)
			}
		}
		if len(zt.services["default/auto.example.org"].Addresses) == 0 {
			return fmt.Errorf("no address allocated yet")
		}
		return nil
	})
	zt.mu.Lock()
	if len(zt.errs) > 0 {
		t.Errorf("resources the decoder refused: %v", zt.errs)
	}
	vips := func(name string) []string {
		var out []string
		for _, a := range zt.services[name].Addresses {
			out = append(out, fmt.Sprintf("%s/%s/%v", a.Network, a.Addr, a.CIDR))
		}
		sort.Strings(out)
		return out
	}
	if got := strings.Join(vips(reviews), " "); got != "/10.96.50.1/false /fd00:10:96::501/false" {
		t.Errorf("dual-stack Service VIPs: %s", got)
	}
	if got := vips(db); len(got) != 0 {
		t.Errorf("headless Service VIPs: %v", got)
	}
	if got := strings.Join(vips("default/auto.example.org"), " "); !strings.HasPrefix(got, "/2001:2::") || !strings.Contains(got, " /240.240.") {
		t.Errorf("allocated ServiceEntry addresses: %s", got)
	}
	if s := zt.services[reviews]; s.Name != "reviews" || s.Namespace != "default" || !s.Canonical || s.NamespaceOnly {
		t.Errorf("Service %+v", *s)
	}
	w0, w1 := zt.workloads[db0], zt.workloads[db1]
	if w0.Name != "db-0" || w0.Namespace != "default" || fmt.Sprint(w0.Addrs) != "[127.0.0.31]" || !w0.Healthy || w0.Node != "node-1" ||
		fmt.Sprint(w0.Services) != "["+db+"]" || !w0.Pod {
		t.Errorf("workload of a ready pod: %+v", *w0)
	}
	if w1.Healthy {
		t.Errorf("workload of a pod not ready: %+v", *w1)
	}
	zt.mu.Unlock()
	t.Logf("on the wire: %v", zt.names())
	for what, r := range map[string]*wireRecorder{"a sidecar node id": sidecar, "TLS with a token of the node's namespace": tlsOK} {
		eventually(t, 10*time.Second, "the same to "+what, func() error {
			if got, want := r.names(), zt.names(); fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("got %v", got)
			}
			return nil
		})
	}
	tlsWrong.mu.Lock()
	if tlsWrong.responses != 0 {
		t.Errorf("a token of namespace default for a node of istio-system got %d responses", tlsWrong.responses)
	}
	tlsWrong.mu.Unlock()
}

// TestAmbientIstiod runs the binary with the ambient source against a real istiod in ambient mode,
// asking from the pods' own (loopback) addresses: Services by every name form, dual stack, headless
// Services with their ready pods and per-pod names, ServiceEntries, each client's namespace learnt
// from its workload, deletions, istiod's death and return, TLS with a token.
func TestAmbientIstiod(t *testing.T) {
	stack := ambientStack(t)
	up := startUpstream(t)
	const forwarded = "192.0.2.53" // what the upstream answers for names meshdns passes on

	dir := t.TempDir()
	rootCert, tokenFile := istiodCredentials(t, stack, dir)
	port, tlsPort, mport, debugPort := freePort(t), freePort(t), freePort(t), freePort(t)
	addr, tlsAddr := "127.0.0.1:"+port, "127.0.0.1:"+tlsPort
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s {
            debug 127.0.0.1:%s
        }
        namespace default
        fallthrough
    }
    forward . %s
    prometheus 127.0.0.1:%s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s {
            tls %s %s
            token %s
        }
        namespace default
        fallthrough
    }
    forward . %s
}
`, port, stack.IstiodGRPC, debugPort, up.addr, mport, tlsPort, stack.IstiodSecureGRPC, rootCert, realstack.IstiodServerName, tokenFile, up.addr)
	srv := startCoreDNS(t, dir, corefile, addr)
	e := &meshEnv{metrics: "127.0.0.1:" + mport}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const (
		db0, db1, db2 = "127.0.0.31", "127.0.0.32", "127.0.0.33"
		shopper       = "127.0.0.41"
		shopper2      = "127.0.0.42"
		stranger      = "127.0.0.99" // no workload has this address
	)

	// A dual-stack ClusterIP Service, by every name form, from a pod of its namespace.
	createSelectorService(t, stack, "default", "db", corev1.ClusterIPNone)
	createAmbientPod(t, stack, "default", "db-0", "db", db0, true)
	createSelectorService(t, stack, "default", "reviews", "10.96.50.1", "fd00:10:96::501")
	for _, name := range []string{"reviews.default.svc.cluster.local.", "reviews.default.", "reviews.default.svc.cluster.local.default.svc.cluster.local."} {
		resolvesTo(t, addr, name, dns.TypeA, "10.96.50.1")
	}
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeAAAA, "fd00:10:96::501")
	resolvesFrom(t, db0, addr, "reviews.", "10.96.50.1")
	resolvesTo(t, tlsAddr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.50.1")

	// A headless Service: its ready pods, and a name per pod.
	createAmbientPod(t, stack, "default", "db-1", "db", db1, false)
	createAmbientPod(t, stack, "default", "db-2", "db", db2, true)
	resolvesTo(t, addr, "db.default.svc.cluster.local.", dns.TypeA, db0, db2)
	resolvesTo(t, addr, "db-2.db.default.svc.cluster.local.", dns.TypeA, db2)
	resolvesTo(t, addr, "db-1.db.default.svc.cluster.local.", dns.TypeA, forwarded) // not ready: not a mesh name
	// The debug endpoint says why: db-1's workload is not healthy.
	var ex ambient.Explanation
	getJSON(t, "http://127.0.0.1:"+debugPort+"/ambient?name=db.default.svc.cluster.local&client="+db1, &ex)
	if len(ex.Services) != 1 || len(ex.Services[0].Workloads) != 3 || ex.Client == nil || ex.Client.Namespace != "default" || len(ex.Answer) != 2 {
		t.Errorf("the debug endpoint on db: %+v", ex)
	}
	for _, w := range ex.Services[0].Workloads {
		if w.Healthy == (w.Resource == "Kubernetes//Pod/default/db-1") {
			t.Errorf("the debug endpoint on db's workload %+v", w)
		}
	}

	// A client's namespace comes from its workload: the bare name of a Service in shop resolves from
	// shop's pod, not from default's pod nor from an address no workload has.
	createSelectorService(t, stack, "shop", "cart")
	createAmbientPod(t, stack, "shop", "shopper", "cart", shopper, true)
	createAmbientPod(t, stack, "shop", "shopper-2", "cart", shopper2, true)
	var cartIP string
	eventually(t, 15*time.Second, "cart.shop", func() error {
		got := addrsOf(t, addr, "cart.shop.svc.cluster.local.", dns.TypeA)
		if len(got) != 1 || !strings.HasPrefix(got[0], "10.96.") {
			return fmt.Errorf("got %v", got)
		}
		cartIP = got[0]
		return nil
	})
	resolvesFrom(t, shopper, addr, "cart.", cartIP)
	resolvesFrom(t, db0, addr, "cart.", forwarded)
	resolvesFrom(t, stranger, addr, "cart.", forwarded)
	resolvesFrom(t, stranger, addr, "reviews.", "10.96.50.1") // the block's namespace

	// ServiceEntries: an allocated address (both families), a wildcard host.
	must(stack.CreateServiceEntry("default", "auto", []string{"auto.example.org"}, nil, "DNS"))
	eventually(t, 15*time.Second, "an allocated address", func() error {
		got := addrsOf(t, addr, "auto.example.org.", dns.TypeA)
		if len(got) != 1 || !strings.HasPrefix(got[0], "240.240.") {
			return fmt.Errorf("got %v", got)
		}
		if got6 := addrsOf(t, addr, "auto.example.org.", dns.TypeAAAA); len(got6) != 1 || !strings.HasPrefix(got6[0], "2001:2::") {
			return fmt.Errorf("AAAA %v", got6)
		}
		return nil
	})
	must(stack.CreateServiceEntry("default", "wild", []string{"*.wild.example.com"}, []string{"240.0.0.9"}, "NONE"))
	resolvesTo(t, addr, "anything.wild.example.com.", dns.TypeA, "240.0.0.9")

	// Deletions.
	must(stack.DeletePod("default", "db-2"))
	resolvesTo(t, addr, "db.default.svc.cluster.local.", dns.TypeA, db0)
	resolvesTo(t, addr, "db-2.db.default.svc.cluster.local.", dns.TypeA, forwarded)
	must(stack.DeleteServiceEntry("default", "wild"))
	resolvesTo(t, addr, "anything.wild.example.com.", dns.TypeA, forwarded)
	must(stack.DeletePod("shop", "shopper"))
	resolvesFrom(t, shopper, addr, "cart.", forwarded) // no longer a shop client

	// istiod dies: answers go on, the metric says so; what changes meanwhile arrives when it is back,
	// removals included.
	stack.StopIstiod()
	eventually(t, 15*time.Second, "disconnected in the metrics", func() error {
		if got := e.metric(t, `coredns_meshdns_ambient_connected{address="`+stack.IstiodGRPC+`"}`); got != 0 {
			return fmt.Errorf("ambient_connected %v", got)
		}
		return nil
	})
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.50.1")
	resolvesTo(t, addr, "db-0.db.default.svc.cluster.local.", dns.TypeA, db0)
	resolvesFrom(t, db0, addr, "reviews.", "10.96.50.1")
	resolvesFrom(t, shopper2, addr, "cart.", cartIP)
	// A Corefile reload while istiod is down: the new instance has the table and knows the clients.
	srv.reload(t)
	resolvesTo(t, addr, "db-0.db.default.svc.cluster.local.", dns.TypeA, db0)
	resolvesFrom(t, shopper2, addr, "cart.", cartIP)
	createSelectorService(t, stack, "default", "ratings", "10.96.50.2")
	must(stack.DeleteService("shop", "cart"))
	must(stack.StartIstiod())
	resolvesTo(t, addr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.50.2")
	if r := exchange(t, "udp", addr, "ratings.default.svc.cluster.local.", dns.TypeAAAA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("AAAA of an IPv4 Service: want NODATA with an SOA, got %v", r)
	}
	resolvesTo(t, addr, "cart.shop.svc.cluster.local.", dns.TypeA, forwarded)
	resolvesTo(t, tlsAddr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.50.2")
	if got := e.metric(t, `coredns_meshdns_ambient_pushes_total{address="`+stack.IstiodGRPC+`",result="rejected"}`); got != 0 {
		t.Errorf("%v pushes from a real istiod were rejected", got)
	}
}

// TestAmbientNetwork: with istiod's cluster on a network (the topology.istio.io/network label of its
// namespace), VIPs and workloads carry it; a block of that network answers them, a block of another
// network does not (a Kubernetes Service is then a name without addresses: NODATA).
func TestAmbientNetwork(t *testing.T) {
	stack := ambientStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := stack.Kube.CoreV1().Namespaces().Get(ctx, realstack.IstioNamespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels["topology.istio.io/network"] = "net1"
	if _, err := stack.Kube.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t)
	const forwarded = "192.0.2.53"
	port, otherPort := freePort(t), freePort(t)
	addr, otherAddr := "127.0.0.1:"+port, "127.0.0.1:"+otherPort
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s {
            network net1
        }
        fallthrough
    }
    forward . %s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s {
            network net2
        }
        fallthrough
    }
    forward . %s
}
`, port, stack.IstiodGRPC, up.addr, otherPort, stack.IstiodGRPC, up.addr)
	startCoreDNS(t, t.TempDir(), corefile, addr)

	createSelectorService(t, stack, "default", "reviews", "10.96.60.1")
	createSelectorService(t, stack, "default", "db", corev1.ClusterIPNone)
	createAmbientPod(t, stack, "default", "db-0", "db", "127.0.0.51", true)
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.60.1")
	resolvesTo(t, addr, "db.default.svc.cluster.local.", dns.TypeA, "127.0.0.51")
	eventually(t, 15*time.Second, "NODATA from another network", func() error {
		for _, name := range []string{"reviews.default.svc.cluster.local.", "db.default.svc.cluster.local."} {
			if r := exchange(t, "udp", otherAddr, name, dns.TypeA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
				return fmt.Errorf("%s from net2: %v", name, r)
			}
		}
		return nil
	})
	resolvesTo(t, otherAddr, "elsewhere.example.", dns.TypeA, forwarded)
}

// TestAmbientReloadsLeaveNothingBehind reloads the binary (SIGUSR1) many times while it follows an
// in-process control plane over delta: one stream stays open, the goroutine count stays flat,
// answers and client views go on, and with the control plane gone a reload keeps both.
func TestAmbientReloadsLeaveNothingBehind(t *testing.T) {
	srv := ndstest.New(t, nil)
	cart := &ambient.Service{Name: "cart", Namespace: "shop", Hostname: "cart.shop.svc.cluster.local",
		Addresses: []ambient.NetworkAddress{{Addr: netip.MustParseAddr("10.96.7.8")}}}
	shopper := &ambient.Workload{UID: "Kubernetes//Pod/shop/shopper", Name: "shopper", Namespace: "shop",
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.61")}, Healthy: true, Pod: true}
	var opened atomic.Int32
	srv.OnOpen = func() any {
		n := opened.Add(1)
		return &discovery.DeltaDiscoveryResponse{TypeUrl: ambient.TypeURL, Nonce: fmt.Sprint(n), Resources: []*discovery.Resource{
			{Name: "shop/" + cart.Hostname, Version: "1", Resource: &anypb.Any{TypeUrl: ambient.TypeURL, Value: ambient.EncodeService(cart)}},
			{Name: shopper.UID, Version: "1", Resource: &anypb.Any{TypeUrl: ambient.TypeURL, Value: ambient.EncodeWorkload(shopper)}},
		}}
	}
	port, pprofPort := freePort(t), freePort(t)
	addr := "127.0.0.1:" + port
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s
        namespace default
    }
    pprof 127.0.0.1:%s
}
`, port, srv.Addr, pprofPort)
	s := startCoreDNS(t, t.TempDir(), corefile, addr)
	answered := func() error {
		r := askFrom(t, "127.0.0.61", addr, "cart.", dns.TypeA)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.7.8" {
			return fmt.Errorf("cart. from shop's pod: %v", r.Answer)
		}
		return nil
	}
	eventually(t, 10*time.Second, "an answer from the control plane's table", answered)
	reload := reloadsKeepOneStream(t, s, srv, pprofPort, answered)
	if n := opened.Load(); n < 22 {
		t.Errorf("the control plane saw %d streams over 21 reloads", n)
	}

	// With the control plane gone, a reload keeps the table and the clients.
	srv.Stop()
	reload()
	if err := answered(); err != nil {
		t.Errorf("after a reload without the control plane: %v", err)
	}
}

// TestAmbientVisibility: with a mesh config that makes the ServiceEntries of some namespaces visible
// to those namespaces only (serviceEntryVisibility), istiod marks their Services NAMESPACE; such a
// host is answered to the pods of its namespace only, has no PTR, and other clients' questions about
// it go on as for any name outside the mesh.
func TestAmbientVisibility(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{
		IstiodEnv: []string{"PILOT_ENABLE_AMBIENT=true"},
		MeshConfig: `serviceEntryVisibility:
  policies:
  - visibility: NAMESPACE
    matchingRules:
    - namespaceSelector:
        matchLabels:
          visibility: private
`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := stack.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "secret", Labels: map[string]string{"visibility": "private"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createAmbientPod(t, stack, "secret", "insider", "insider", "127.0.0.71", true)
	createAmbientPod(t, stack, "default", "outsider", "outsider", "127.0.0.72", true)
	if err := stack.CreateServiceEntry("secret", "vault", []string{"vault.secret.example"}, []string{"240.0.0.71"}, "STATIC"); err != nil {
		t.Fatal(err)
	}
	if err := stack.CreateServiceEntry("default", "open", []string{"open.example"}, []string{"240.0.0.72"}, "STATIC"); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t)
	const forwarded = "192.0.2.53"
	port := freePort(t)
	addr := "127.0.0.1:" + port
	startCoreDNS(t, t.TempDir(), fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s
        namespace default
        fallthrough
    }
    forward . %s
}
`, port, stack.IstiodGRPC, up.addr), addr)

	resolvesFrom(t, "127.0.0.71", addr, "vault.secret.example.", "240.0.0.71")
	resolvesFrom(t, "127.0.0.72", addr, "vault.secret.example.", forwarded)
	resolvesFrom(t, "127.0.0.99", addr, "vault.secret.example.", forwarded)
	for _, src := range []string{"127.0.0.71", "127.0.0.72"} {
		resolvesFrom(t, src, addr, "open.example.", "240.0.0.72")
	}
	// No PTR, even to its own namespace: the question goes upstream, which has none.
	if r := askFrom(t, "127.0.0.71", addr, "71.0.0.240.in-addr.arpa.", dns.TypePTR); len(r.Answer) != 0 || up.count("71.0.0.240.in-addr.arpa. PTR") != 1 {
		t.Errorf("the PTR of a namespace's own ServiceEntry: %v", r.Answer)
	}
}
