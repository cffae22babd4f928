package kubewatch

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/kubernetes/object"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkKeptMemory is the heap the informers hold for each object, after trimming, against
// CoreDNS's kubernetes plugin's own compact forms (object.ToService, EndpointSliceToEndpoints) of
// the same objects, decoded from protobuf as client-go decodes them: bench-kube's shapes (a Service
// with one port, as the API server fills it; an EndpointSlice of 25 endpoints with hostnames, one in
// ten not ready). Run with -benchtime 1x.
func BenchmarkKeptMemory(b *testing.B) {
	const n = 5000
	svc := apiService()
	svcWire, err := svc.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	slice := apiSlice(25)
	sliceWire, err := slice.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	decodeService := func() *corev1.Service {
		var s corev1.Service
		if err := s.Unmarshal(svcWire); err != nil {
			b.Fatal(err)
		}
		return &s
	}
	decodeSlice := func() *discoveryv1.EndpointSlice {
		var s discoveryv1.EndpointSlice
		if err := s.Unmarshal(sliceWire); err != nil {
			b.Fatal(err)
		}
		return &s
	}
	needs := ServiceNeeds{Annotations: []string{"networking.istio.io/exportTo"}}
	for b.Loop() {
		ours := keptBytes(n, func() any { return NewService(decodeService(), needs) })
		peer := keptBytes(n, func() any { o, _ := object.ToService(decodeService()); return o })
		b.ReportMetric(ours, "B/service")
		b.ReportMetric(peer, "coredns-B/service")
		b.ReportMetric(ours/peer, "service-ratio")
		ours = keptBytes(n, func() any { return NewEndpointSlice(decodeSlice(), SliceLabels...) })
		peer = keptBytes(n, func() any { o, _ := object.EndpointSliceToEndpoints(decodeSlice()); return o })
		b.ReportMetric(ours, "B/slice")
		b.ReportMetric(peer, "coredns-B/slice")
		b.ReportMetric(ours/peer, "slice-ratio")
	}
}

// keptBytes is the live heap each of n objects made by kept holds, garbage collected.
func keptBytes(n int, kept func() any) float64 {
	all := make([]any, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range all {
		all[i] = kept()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(all)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func apiMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "ns-17", UID: types.UID("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
		ResourceVersion: "1234567", CreationTimestamp: metav1.NewTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)),
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:ports":{}}}`)}}}}
}

func apiService() *corev1.Service {
	single := corev1.IPFamilyPolicySingleStack
	cluster := corev1.ServiceInternalTrafficPolicyCluster
	return &corev1.Service{ObjectMeta: apiMeta("svc-1234"), Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.12.34", ClusterIPs: []string{"10.96.12.34"},
		Ports:           []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		SessionAffinity: corev1.ServiceAffinityNone, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
		IPFamilyPolicy: &single, InternalTrafficPolicy: &cluster,
	}}
}

func apiSlice(endpoints int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: apiMeta("svc-1234-1"), AddressType: discoveryv1.AddressTypeIPv4}
	s.Labels = map[string]string{discoveryv1.LabelServiceName: "svc-1234"}
	for j := range endpoints {
		ready := j%10 != 0
		host := fmt.Sprintf("svc-1234-%d", j)
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.112.34.%d", j+1)},
			Hostname: &host, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return s
}
