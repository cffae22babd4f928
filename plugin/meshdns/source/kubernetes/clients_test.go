package kubernetes

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(ns, ip string, hostNetwork bool, phase corev1.PodPhase) *clientPod {
	return newClientPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Spec: corev1.PodSpec{HostNetwork: hostNetwork},
		Status: corev1.PodStatus{Phase: phase, PodIP: ip}})
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestClientNamespaces(t *testing.T) {
	c := &clientIndex{}
	ns, synced, ch := c.ClientNamespaces()
	if ns != nil || synced || closed(ch) {
		t.Fatalf("before the first sync: %v %v %v", ns, synced, closed(ch))
	}
	c.rebuild(nil)
	if !closed(ch) {
		t.Fatal("the first sync, even with no pods, is a change")
	}
	ns, synced, ch = c.ClientNamespaces()
	if len(ns) != 0 || !synced {
		t.Fatalf("after an empty sync: %v %v", ns, synced)
	}
	c.rebuild([]any{
		pod("b", "10.0.0.2", false, corev1.PodRunning),
		pod("a", "10.0.0.1", false, corev1.PodRunning),
		pod("a", "10.0.0.3", false, corev1.PodPending),
		pod("host", "192.168.0.1", true, corev1.PodRunning), // host network: no namespace's address
		pod("done", "10.0.0.4", false, corev1.PodSucceeded), // finished
	})
	if !closed(ch) {
		t.Fatal("new namespaces: no change signalled")
	}
	ns, _, ch = c.ClientNamespaces()
	if !slices.Equal(ns, []string{"a", "b"}) {
		t.Fatalf("namespaces %v", ns)
	}
	c.rebuild([]any{pod("a", "10.0.0.9", false, corev1.PodRunning), pod("b", "10.0.0.2", false, corev1.PodRunning)})
	if closed(ch) {
		t.Error("the same namespaces, other pods: a change signalled")
	}
	c.rebuild([]any{pod("b", "10.0.0.2", false, corev1.PodRunning)})
	if !closed(ch) {
		t.Error("a namespace gone: no change signalled")
	}
	if ns, _, _ = c.ClientNamespaces(); !slices.Equal(ns, []string{"b"}) {
		t.Errorf("namespaces %v", ns)
	}
}
