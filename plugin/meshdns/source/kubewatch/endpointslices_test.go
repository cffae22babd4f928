package kubewatch

import (
	"fmt"
	"net/netip"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestTrimEndpointSlice(t *testing.T) {
	no := false
	in := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Annotations: map[string]string{"a": "b"},
			Labels: map[string]string{discoveryv1.LabelServiceName: "web", "other": "x"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
			{Addresses: []string{"10.0.0.2", "not-an-ip", "fd00::2"}, Hostname: ptr("web-b")}},
	}
	obj, err := TrimEndpointSlice(discoveryv1.LabelServiceName)(in)
	if err != nil {
		t.Fatal(err)
	}
	out := obj.(*EndpointSlice)
	if fmt.Sprint(out.GetLabels()) != "map[kubernetes.io/service-name:web]" || out.Annotations != nil || out.AddressType != in.AddressType || len(out.Endpoints) != 2 {
		t.Errorf("trimmed to %+v", out)
	}
	if out.Endpoints[0].Ready || !out.Endpoints[1].Ready {
		t.Error("Ready: a false condition is not ready, a missing one is")
	}
	if got := fmt.Sprintln(out.Endpoints[0].Addrs, out.Endpoints[1].Addrs, out.Endpoints[1].Hostname); got != "[10.0.0.1] [10.0.0.2 fd00::2] web-b\n" {
		t.Errorf("addresses and hostname kept: %s", got)
	}
	if a := out.Endpoints[0].Addrs; cap(a) != len(a) {
		t.Errorf("an endpoint's addresses have room beyond them (cap %d, len %d): appending to a shared slice would write into the next endpoint's", cap(a), len(a))
	}
	if again, _ := TrimEndpointSlice()(out); again != any(out) {
		t.Error("a kept slice trimmed again is not itself")
	}
	if k := SliceServiceKey(cache.DeletedFinalStateUnknown{Obj: out}); k != "shop/web" {
		t.Errorf("key of a tombstone: %q", k)
	}
	if keys, _ := SliceService(&EndpointSlice{}); keys != nil {
		t.Errorf("a slice of no Service indexed under %v", keys)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "x"}
	if got, _ := TrimEndpointSlice()(tomb); got != any(tomb) {
		t.Errorf("a tombstone trimmed to %v", got)
	}
}

func TestAppendNew(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	if got := AppendNew([]netip.Addr{a}, []netip.Addr{a, b, b}); fmt.Sprint(got) != "[10.0.0.1 fd00::1]" {
		t.Errorf("got %v", got)
	}
}

func ptr[T any](v T) *T { return &v }
