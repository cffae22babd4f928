package kubewatch

import (
	"net/netip"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// ServiceIndex indexes EndpointSlices by the "ns/name" of their Service (SliceService).
const ServiceIndex = "service"

// Meta keeps what every trimmed object keeps of its metadata: the informers keep only what names
// are built from, and annotations and managed fields would be most of a large cluster's memory.
func Meta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp}
}

// TrimEndpointSlice is the transform keeping of an EndpointSlice its address type, the labels
// given, and its endpoints' addresses, Ready condition and hostname.
func TrimEndpointSlice(labels ...string) cache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return obj, nil // a tombstone: DeletedFinalStateUnknown
		}
		out := &discoveryv1.EndpointSlice{ObjectMeta: Meta(&s.ObjectMeta), AddressType: s.AddressType}
		for _, l := range labels {
			if v, ok := s.Labels[l]; ok {
				if out.Labels == nil {
					out.Labels = make(map[string]string, 1)
				}
				out.Labels[l] = v
			}
		}
		out.Endpoints = make([]discoveryv1.Endpoint, len(s.Endpoints))
		for i, ep := range s.Endpoints {
			out.Endpoints[i] = discoveryv1.Endpoint{
				Addresses:  ep.Addresses,
				Conditions: discoveryv1.EndpointConditions{Ready: ep.Conditions.Ready},
				Hostname:   ep.Hostname,
			}
		}
		return out, nil
	}
}

// SliceKey is the "ns/name" an EndpointSlice (or its tombstone) names with label: its Service's
// (discoveryv1.LabelServiceName), or its MCS ServiceImport's.
func SliceKey(obj any, label string) string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return ""
	}
	name := es.Labels[label]
	if name == "" {
		return ""
	}
	return es.Namespace + "/" + name
}

// SliceIndex indexes an EndpointSlice under the SliceKey of label.
func SliceIndex(obj any, label string) ([]string, error) {
	if k := SliceKey(obj, label); k != "" {
		return []string{k}, nil
	}
	return nil, nil
}

// SliceServiceKey is the "ns/name" of the Service an EndpointSlice (or its tombstone) belongs to.
func SliceServiceKey(obj any) string { return SliceKey(obj, discoveryv1.LabelServiceName) }

// SliceService is the ServiceIndex index function.
func SliceService(obj any) ([]string, error) { return SliceIndex(obj, discoveryv1.LabelServiceName) }

// Ready reads an endpoint's Ready condition; the API defines a missing one as ready.
func Ready(ep discoveryv1.Endpoint) bool {
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

// AppendNew appends to dst the addresses of src it does not hold yet.
func AppendNew(dst, src []netip.Addr) []netip.Addr {
	for _, a := range src {
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}
