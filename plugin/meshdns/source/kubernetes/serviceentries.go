package kubernetes

import (
	"fmt"
	"net/netip"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// serviceEntryGVR is Istio's ServiceEntry; v1 is served by every Istio since 1.22.
var serviceEntryGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}

// serviceEntry is the part of an Istio ServiceEntry that names hosts, which is all the informer keeps.
type serviceEntry struct {
	metav1.ObjectMeta
	Hosts     []string
	Addresses []string
	ExportTo  []string
	Allocated []allocatedAddress // status.addresses: what istiod allocated, per host
}

type allocatedAddress struct{ Host, Value string }

// GetObjectKind and DeepCopyObject make serviceEntry a runtime.Object, which informers hand around.
func (se *serviceEntry) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (se *serviceEntry) DeepCopyObject() runtime.Object {
	out := *se
	se.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

// newServiceEntry reads the fields we use out of an unstructured ServiceEntry. Fields of the wrong
// type read as missing; the API server validated the object against its schema already.
func newServiceEntry(u *unstructured.Unstructured) *serviceEntry {
	se := &serviceEntry{ObjectMeta: metav1.ObjectMeta{
		Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
		CreationTimestamp: u.GetCreationTimestamp(),
	}}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	se.ExportTo, _, _ = unstructured.NestedStringSlice(spec, "exportTo")
	se.Hosts, _, _ = unstructured.NestedStringSlice(spec, "hosts")
	se.Addresses, _, _ = unstructured.NestedStringSlice(spec, "addresses")
	if addrs, ok, _ := unstructured.NestedSlice(u.Object, "status", "addresses"); ok {
		for _, a := range addrs {
			if m, ok := a.(map[string]any); ok {
				host, _ := m["host"].(string)
				value, _ := m["value"].(string)
				se.Allocated = append(se.Allocated, allocatedAddress{Host: host, Value: value})
			}
		}
	}
	return se
}

// serviceEntryEntries returns the names of a ServiceEntry as istiod's name table gives them: each
// host with the addresses in spec (IPs; CIDRs name no host), or when there are none the addresses
// istiod allocated for the host (status). A host with neither has no name (istiod would give a
// resolution NONE entry selecting workloads their addresses: WorkloadEntries are not watched).
// Hosts that are not valid names are reported and skipped.
func serviceEntryEntries(se *serviceEntry, cluster string) ([]table.Entry, []error) {
	var (
		out  []table.Entry
		errs []error
	)
	for _, h := range se.Hosts {
		if err := table.ValidateHost(h); err != nil {
			errs = append(errs, fmt.Errorf("serviceentry %s/%s: host %v", se.Namespace, se.Name, err))
			continue
		}
		var addrs []netip.Addr
		switch {
		case len(se.Addresses) > 0:
			addrs = parseIPs(se.Addresses)
		default:
			addrs = parseIPs(se.allocatedFor(h))
		}
		if len(addrs) == 0 {
			continue
		}
		out = append(out, table.Entry{Host: h, Addrs: addrs, Registry: table.RegistryExternal, Cluster: cluster})
	}
	return out, errs
}

// allocatedFor returns the addresses istiod allocated to host (those without a host are for all).
func (se *serviceEntry) allocatedFor(host string) []string {
	var out []string
	for _, a := range se.Allocated {
		if a.Host == "" || a.Host == host {
			out = append(out, a.Value)
		}
	}
	return out
}

// parseIPs keeps the strings that are IP addresses: CIDRs, host names and unix sockets name no host.
func parseIPs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil && !a.IsUnspecified() {
			out = kubewatch.AppendNew(out, []netip.Addr{a})
		}
	}
	return out
}

// serviceEntryMeta is what the visibility of a ServiceEntry's names depends on.
func serviceEntryMeta(se *serviceEntry) objectMeta {
	return objectMeta{name: se.Name, ns: se.Namespace, created: se.CreationTimestamp.Time,
		exportTo: se.ExportTo, field: "spec.exportTo"}
}
