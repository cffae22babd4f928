package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var sidecarGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "sidecars"}

// TestNDSPerNamespace runs the binary against the real istiod with nds per namespace and the
// kubernetes source's clients: a pod of namespace a and one of b, on the node, each get the NDS view
// istiod gives a sidecar of their namespace (exportTo ".", a's Sidecar), and a namespace's
// subscription closes once its last pod is gone; and the same over istiod's TLS port, with a token
// requested for each namespace.
func TestNDSPerNamespace(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{})
	up := startUpstream(t)
	const forwarded = "192.0.2.53" // what the upstream answers for names meshdns passes on
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Service ns/name at ip, exported to exportTo when not empty.
	service := func(ns, name, ip, exportTo string) {
		t.Helper()
		must(stack.EnsureNamespace(ns))
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip},
				Ports: []corev1.ServicePort{{Name: realstack.ServicePortName, Port: realstack.ServicePort, Protocol: corev1.ProtocolTCP}}},
		}
		if exportTo != "" {
			svc.Annotations = map[string]string{"networking.istio.io/exportTo": exportTo}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := stack.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("service %s/%s: %v", ns, name, err)
		}
	}
	service("a", "web", "10.96.40.1", ".")       // a's only
	service("b", "db", "10.96.40.2", ".")        // b's only
	service("c", "extra", "10.96.40.3", "")      // everyone's, but a's Sidecar leaves it out
	service("default", "both", "10.96.40.4", "") // everyone's
	must(stack.CreateObject(sidecarGVR, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "Sidecar",
		"metadata":   map[string]any{"name": "default", "namespace": "a"},
		"spec":       map[string]any{"egress": []any{map[string]any{"hosts": []any{"./*", "default/*", "istio-system/*"}}}},
	}}))
	const inA, inB = "127.0.0.41", "127.0.0.42"
	must(stack.CreatePod("a", "client-a", "node-1", false, inA))
	must(stack.CreatePod("b", "client-b", "node-1", false, inB))

	rootCert, err := stack.IstiodRootCert()
	must(err)
	dir := t.TempDir()
	port, tlsPort, mport := freePort(t), freePort(t), freePort(t)
	addr, tlsAddr := "127.0.0.1:"+port, "127.0.0.1:"+tlsPort
	e := &meshEnv{metrics: "127.0.0.1:" + mport}
	// The second server follows istiod's TLS port, each namespace with a token of its own.
	startCoreDNS(t, dir, fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s {
            tls %s %s
            namespaces clients
            token_request
        }
        kubernetes {
            kubeconfig %s
            clients_only node-1
        }
        fallthrough
    }
    forward . %s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s {
            namespaces clients
            namespace_grace 1s
        }
        kubernetes {
            kubeconfig %s
            clients_only node-1
        }
        fallthrough
    }
    forward . %s
    prometheus %s
}
`, tlsPort, stack.IstiodSecureGRPC, rootCert, realstack.IstiodServerName, stack.Kubeconfig, up.addr,
		port, stack.IstiodGRPC, stack.Kubeconfig, up.addr, e.metrics), addr)

	for _, tc := range []struct {
		from, name, want string
	}{
		{inA, "web.a.svc.cluster.local.", "10.96.40.1"},
		{inA, "web.", "10.96.40.1"},
		{inA, "db.b.svc.cluster.local.", forwarded},    // b exports it to b only
		{inA, "extra.c.svc.cluster.local.", forwarded}, // a's Sidecar leaves c out
		{inA, "both.default.svc.cluster.local.", "10.96.40.4"},
		{inB, "db.b.svc.cluster.local.", "10.96.40.2"},
		{inB, "db.", "10.96.40.2"},
		{inB, "web.a.svc.cluster.local.", forwarded},
		{inB, "extra.c.svc.cluster.local.", "10.96.40.3"},
		{inB, "both.default.svc.cluster.local.", "10.96.40.4"},
		{"127.0.0.1", "both.default.svc.cluster.local.", forwarded}, // no pod: no namespace's view
	} {
		resolvesFrom(t, tc.from, addr, tc.name, tc.want)
		resolvesFrom(t, tc.from, tlsAddr, tc.name, tc.want)
	}
	for _, a := range []string{stack.IstiodGRPC, stack.IstiodSecureGRPC} {
		if n := e.metric(t, `coredns_meshdns_nds_namespace_subscriptions{address="`+a+`"}`); n != 2 {
			t.Errorf("namespace subscriptions to %s: %v, want 2", a, n)
		}
	}
	for _, a := range []string{stack.IstiodGRPC, stack.IstiodSecureGRPC} {
		if n := e.metric(t, `coredns_meshdns_nds_connected{address="`+a+`"}`); n != 2 {
			t.Errorf("nds streams connected to %s: %v, want 2", a, n)
		}
	}

	// A change in one namespace's view: a new Service of a's reaches a's clients only.
	service("a", "api", "10.96.40.5", ".")
	resolvesFrom(t, inA, addr, "api.a.svc.cluster.local.", "10.96.40.5")
	resolvesFrom(t, inB, addr, "api.a.svc.cluster.local.", forwarded)
	resolvesFrom(t, inA, tlsAddr, "api.a.svc.cluster.local.", "10.96.40.5")

	// A third namespace with a pod: its subscription opens, its view comes.
	must(stack.CreatePod("c", "client-c", "node-1", false, "127.0.0.43"))
	resolvesFrom(t, "127.0.0.43", addr, "extra.", "10.96.40.3")
	resolvesFrom(t, "127.0.0.43", addr, "db.b.svc.cluster.local.", forwarded)

	// b's last pod gone: after the grace its subscription closes, and what only b saw goes.
	must(stack.DeletePod("b", "client-b"))
	eventually(t, 15*time.Second, "b's subscription closed", func() error {
		if n := e.metric(t, `coredns_meshdns_nds_namespace_subscriptions{address="`+stack.IstiodGRPC+`"}`); n != 2 {
			return fmt.Errorf("%v subscriptions", n)
		}
		return nil
	})
	resolvesFrom(t, inB, addr, "db.b.svc.cluster.local.", forwarded)
	resolvesFrom(t, inA, addr, "web.", "10.96.40.1")
	if r := askFrom(t, inA, addr, "web.a.svc.cluster.local.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("AAAA of a v4-only name: %v", r)
	}
}
