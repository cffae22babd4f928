package kubewatch

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func TestSharedInformers(t *testing.T) {
	rc := &rest.Config{Host: "https://192.0.2.1"}
	kube := fake.NewClientset(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "istio-system", Labels: map[string]string{"x": "y"},
			Annotations: map[string]string{"networking.istio.io/exportTo": ".", "other": "z"}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.9", ClusterIPs: []string{"10.96.0.9"}, ExternalIPs: []string{"192.0.2.9"}},
	})
	Want(rc, ServiceNeeds{Annotations: []string{"networking.istio.io/exportTo"}})
	Want(rc, ServiceNeeds{Labels: true, Gateway: true})
	a, releaseA, err := Acquire(rc, kube, kube, cache.Indexers{ServiceIndex: SliceService})
	if err != nil {
		t.Fatal(err)
	}
	b, releaseB, err := Acquire(rc, kube, kube, cache.Indexers{ServiceIndex: SliceService, "other": SliceService})
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two sources of one cluster got two sets of informers")
	}
	if !IsShared(a.Services) || !IsShared(a.Slices) {
		t.Error("the shared informers are not known as shared: a source would set their error handler once started")
	}
	if _, ok := a.Slices.GetIndexer().GetIndexers()["other"]; !ok {
		t.Error("the second source's index was not added")
	}
	if !WaitSynced(context.Background(), []cache.InformerSynced{a.Services.HasSynced}) {
		t.Fatal("not synced")
	}
	obj, ok, _ := a.Services.GetStore().GetByKey("istio-system/gw")
	svc, _ := obj.(*Service)
	if !ok || svc == nil || svc.Labels["x"] != "y" || len(svc.Annotations) != 1 || len(svc.GatewayIPs) != 1 || len(svc.ClusterIPs) != 1 {
		t.Fatalf("kept %+v: want what both sources read, and only that", svc)
	}
	releaseA()
	releaseA() // twice is once
	if c, releaseC, _ := Acquire(rc, kube, kube, nil); c != a {
		t.Error("released by one of two users: stopped")
	} else {
		releaseC()
	}
	releaseB()
	shared.mu.Lock()
	left := len(shared.active) + len(shared.needs)
	shared.mu.Unlock()
	if left != 0 {
		t.Errorf("%d registry entries left after the last release", left)
	}
}
