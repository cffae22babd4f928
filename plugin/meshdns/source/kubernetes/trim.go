package kubernetes

import (
	"net/netip"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

// The informers keep only what names are built from: a node-local resolver watches every Service,
// EndpointSlice and Pod of a large cluster, and their annotations, managed fields, pod specs and
// statuses would be most of its memory. Each transform returns a new, small object. Services and
// EndpointSlices are kept by kubewatch's transforms (kubewatch.TrimService, TrimEndpointSlice), which
// the shared informers of a cluster use.

// clientPod is what the pod informer keeps of a Pod (1,240 bytes, its spec and status): its
// addresses as a client, none for a host-network pod (it has the node's, shared with every other
// such pod, whatever their namespaces) or one that is done (its addresses may be new pods' already).
type clientPod struct {
	kubewatch.Meta
	addrs []netip.Addr // both families, unmapped
}

func newClientPod(p *corev1.Pod) *clientPod {
	out := &clientPod{Meta: kubewatch.MetaOf(&p.ObjectMeta)}
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return out
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out.addrs = append(out.addrs, a.Unmap())
		}
	}
	return out
}

func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone, or kept already
	}
	return newClientPod(p), nil
}

func trimServiceEntry(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	return newServiceEntry(u), nil
}

var (
	_ cache.TransformFunc = trimPod
	_ cache.TransformFunc = trimServiceEntry
	_ cache.TransformFunc = trimServiceImport
	_ cache.TransformFunc = trimSidecar
)
