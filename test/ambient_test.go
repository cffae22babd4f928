package test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/ambient"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/test/realstack"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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
func subscribe(t *testing.T, addr, id string, delta bool, md map[string]any) *wireRecorder {
	t.Helper()
	meta, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	c, err := xds.New(xds.Config{Dial: xds.Dial{Address: addr}, Name: "probe " + id, Node: &core.Node{Id: id, Metadata: meta},
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

// TestAmbientIstiodWire records what a real istiod in ambient mode sends, and to whom: the facts the
// ambient source is built on.
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
	zt := subscribe(t, stack.IstiodGRPC, "ztunnel~127.0.0.1~ztunnel-x.istio-system~istio-system.svc.cluster.local", true, md)
	sidecar := subscribe(t, stack.IstiodGRPC, "sidecar~127.0.0.2~probe.default~default.svc.cluster.local", true, md)
	sotw := subscribe(t, stack.IstiodGRPC, "ztunnel~127.0.0.3~ztunnel-y.istio-system~istio-system.svc.cluster.local", false, md)

	time.Sleep(8 * time.Second)
	for name, r := range map[string]*wireRecorder{"ztunnel delta": zt, "sidecar delta": sidecar, "ztunnel sotw": sotw} {
		r.mu.Lock()
		t.Logf("%s: %d responses, errors %v", name, r.responses, r.errs)
		r.mu.Unlock()
		for _, n := range r.names() {
			t.Logf("  %s", n)
		}
	}
	zt.mu.Lock()
	for n, w := range zt.workloads {
		t.Logf("workload %s: %+v", n, *w)
	}
	for n, s := range zt.services {
		t.Logf("service %s: %+v", n, *s)
	}
	zt.mu.Unlock()
}
