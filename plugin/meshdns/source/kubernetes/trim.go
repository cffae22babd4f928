package kubernetes

import (
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

func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: kubewatch.Meta(&p.ObjectMeta),
		Spec:       corev1.PodSpec{HostNetwork: p.Spec.HostNetwork},
		Status:     corev1.PodStatus{Phase: p.Status.Phase, PodIPs: p.Status.PodIPs, PodIP: p.Status.PodIP},
	}, nil
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
