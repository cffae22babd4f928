package kubewatch

import (
	"net/netip"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// ServiceIndex indexes EndpointSlices by the "ns/name" of their Service (SliceService).
const ServiceIndex = "service"

// EndpointSlice is what the informers keep of a discoveryv1.EndpointSlice: its address type, the
// labels asked for, and of each endpoint its addresses, parsed, readiness and hostname.
type EndpointSlice struct {
	Meta
	AddressType discoveryv1.AddressType
	Endpoints   []Endpoint
	// labels are the labels kept, as key, value pairs: a map of one entry is some 300 bytes, and a
	// cluster has an EndpointSlice for every Service with a selector.
	labels []string
}

// Label is the value of the label key, if kept.
func (s *EndpointSlice) Label(key string) string {
	for i := 0; i+1 < len(s.labels); i += 2 {
		if s.labels[i] == key {
			return s.labels[i+1]
		}
	}
	return ""
}

// GetLabels implements metav1.Object: the labels kept, as a new map.
func (s *EndpointSlice) GetLabels() map[string]string {
	m := make(map[string]string, len(s.labels)/2)
	for i := 0; i+1 < len(s.labels); i += 2 {
		m[s.labels[i]] = s.labels[i+1]
	}
	return m
}

// Endpoint is an endpoint of an EndpointSlice: 48 bytes and its address, where the API's is 96 and
// strings and pointers for each field.
type Endpoint struct {
	// Addrs are the addresses that parse as IPs (not an FQDN slice's), each slice exactly its
	// length: a name's entry may share it.
	Addrs    []netip.Addr
	Hostname string // "" when it has none
	Ready    bool   // the Ready condition; the API defines a missing one as ready
}

// NewEndpointSlice is the EndpointSlice kept of s, with the labels named in labels.
func NewEndpointSlice(s *discoveryv1.EndpointSlice, labels ...string) *EndpointSlice {
	out := &EndpointSlice{Meta: MetaOf(&s.ObjectMeta), AddressType: s.AddressType, Endpoints: make([]Endpoint, len(s.Endpoints))}
	for _, k := range labels {
		if v, ok := s.Labels[k]; ok {
			out.labels = append(out.labels, k, v) // the caller's key: the decoded one is not kept
		}
	}
	out.labels = slices.Clip(out.labels)
	n := 0
	for _, ep := range s.Endpoints {
		n += len(ep.Addresses)
	}
	addrs := make([]netip.Addr, 0, n) // one array for all the slice's addresses
	for i, ep := range s.Endpoints {
		e := Endpoint{Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready}
		if ep.Hostname != nil {
			e.Hostname = *ep.Hostname
		}
		from := len(addrs)
		for _, a := range ep.Addresses {
			if addr, err := netip.ParseAddr(a); err == nil {
				addrs = append(addrs, addr)
			}
		}
		if len(addrs) > from {
			e.Addrs = addrs[from:len(addrs):len(addrs)]
		}
		out.Endpoints[i] = e
	}
	return out
}

// TrimEndpointSlice is the informers' transform to an EndpointSlice kept with labels.
func TrimEndpointSlice(labels ...string) cache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return obj, nil // a tombstone (DeletedFinalStateUnknown), or kept already
		}
		return NewEndpointSlice(s, labels...), nil
	}
}

// SliceKey is the "ns/name" an EndpointSlice (or its tombstone) names with label: its Service's
// (discoveryv1.LabelServiceName), or its MCS ServiceImport's.
func SliceKey(obj any, label string) string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	es, ok := obj.(*EndpointSlice)
	if !ok {
		return ""
	}
	name := es.Label(label)
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

// AppendNew appends to dst the addresses of src it does not hold yet.
func AppendNew(dst, src []netip.Addr) []netip.Addr {
	for _, a := range src {
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}
