package kubernetes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// serviceEntries returns the names of a Service, as istiod's name table gives them: the ClusterIPs
// (every family) of a Service with a virtual IP; for a headless Service the ready endpoints of its
// EndpointSlices (all of them with publishNotReadyAddresses) and one name per endpoint hostname; for an
// ExternalName Service a CNAME to its external name.
func serviceEntries(svc *kubewatch.Service, eps []*kubewatch.EndpointSlice, clusterDomain, cluster string) ([]table.Entry, error) {
	// Fully qualified and lower case, as the table files it: its canonical form is then no copy.
	host := svc.Name + "." + svc.Namespace + ".svc." + clusterDomain + "."
	e := table.Entry{
		Host:      host,
		Registry:  table.RegistryKubernetes,
		ShortName: svc.Name,
		Namespace: svc.Namespace,
		Cluster:   cluster,
	}
	switch {
	case svc.Type == corev1.ServiceTypeExternalName:
		if err := table.ValidateHost(svc.ExternalName); err != nil || svc.ExternalName[0] == '*' {
			return nil, fmt.Errorf("service %s/%s: externalName %q is not a host name", svc.Namespace, svc.Name, svc.ExternalName)
		}
		e.Alias = svc.ExternalName
		return []table.Entry{e}, nil
	case svc.Headless():
		return headlessEntries(e, svc, eps), nil
	}
	for _, s := range svc.ClusterIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("service %s/%s: clusterIP %q: %v", svc.Namespace, svc.Name, s, err)
		}
		e.Addrs = append(e.Addrs, a)
	}
	if len(e.Addrs) == 0 {
		return nil, nil // not allocated yet: nothing to answer
	}
	return []table.Entry{e}, nil
}

// headlessEntries fills the headless Service's entry svc with its endpoints and adds the per-pod
// names <hostname>.<service>.<ns>.svc.<domain>. Slices of one Service may repeat an endpoint (one
// slice per family, or while the controller moves endpoints): addresses are merged.
func headlessEntries(svc table.Entry, obj *kubewatch.Service, eps []*kubewatch.EndpointSlice) []table.Entry {
	addrSlices := addressSlices(eps)
	// The service's addresses and its per-pod names at most: its entry's addresses and the entries
	// are each made once, at their size (growing them by appends was most of a first flush's garbage).
	n, named := 0, 0
	for _, s := range addrSlices {
		for _, ep := range s.Endpoints {
			if obj.PublishNotReadyAddresses || ep.Ready {
				n += len(ep.Addrs)
				if isDNS1123Label(ep.Hostname) {
					named++
				}
			}
		}
	}
	out := make([]table.Entry, 1, 1+named)
	out[0] = svc
	out[0].Addrs = make([]netip.Addr, 0, n)
	pods := make(map[string]int, named) // hostname -> index in out
	for _, s := range addrSlices {
		for _, ep := range s.Endpoints {
			if !obj.PublishNotReadyAddresses && !ep.Ready {
				continue
			}
			addrs := ep.Addrs
			out[0].Addrs = kubewatch.AppendNew(out[0].Addrs, addrs)
			if !isDNS1123Label(ep.Hostname) {
				continue
			}
			i, ok := pods[ep.Hostname]
			if !ok {
				i = len(out)
				pods[ep.Hostname] = i
				host := ep.Hostname + "." + svc.Host // hostname.name.ns.svc.domain.
				out = append(out, table.Entry{
					Host:      host,
					Registry:  table.RegistryKubernetes,
					ShortName: host[:len(ep.Hostname)+1+len(obj.Name)], // hostname.name, sharing Host's bytes
					Namespace: obj.Namespace,
					Cluster:   svc.Cluster,
				})
				if len(addrs) == 1 {
					// The common case: the informer's own address, shared (the table only reads
					// it; the slice is exactly its length, so a later append copies).
					out[i].Addrs = addrs
					continue
				}
			}
			out[i].Addrs = kubewatch.AppendNew(out[i].Addrs, addrs)
		}
	}
	return out
}

// isDNS1123Label is validation.IsDNS1123Label without its regular expression and error strings: it
// is asked of every endpoint's hostname at every flush. A label is 1 to 63 of [a-z0-9-], starting
// and ending with a letter or digit.
func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > validation.DNS1123LabelMaxLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// addressSlices returns the slices of eps that carry addresses (FQDN slices carry names), in name
// order: endpoints then come in slice order, so the answer order does not depend on the informer.
func addressSlices(eps []*kubewatch.EndpointSlice) []*kubewatch.EndpointSlice {
	out := make([]*kubewatch.EndpointSlice, 0, len(eps))
	for _, s := range eps {
		if s.AddressType == discoveryv1.AddressTypeIPv4 || s.AddressType == discoveryv1.AddressTypeIPv6 {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *kubewatch.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// serviceMeta is what the visibility of a Service's names depends on: the per-pod names of a
// headless Service are seen with the Service.
func serviceMeta(svc *kubewatch.Service) objectMeta {
	return objectMeta{name: svc.Name, ns: svc.Namespace, kube: true, created: svc.CreationTime().Time,
		exportTo: splitExportTo(svc.Annotations[exportToAnnotation]), field: "annotation " + exportToAnnotation}
}
