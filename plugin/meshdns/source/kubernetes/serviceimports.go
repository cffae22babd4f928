package kubernetes

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The Multi-Cluster Services API (KEP-1645): a ServiceImport is a service exported by one or more
// clusters of the clusterset, and its endpoints, gathered from every exporting cluster by the MCS
// controller, are EndpointSlices in the importing cluster labelled with the import's name and the
// cluster they come from. Names follow the MCS DNS specification 1.0.0.

// DNSSchemaVersion is the version of the MCS DNS specification served, in dns-version.<zone> TXT.
const DNSSchemaVersion = "1.0.0"

// DefaultClustersetZone is the zone of multicluster names, which the MCS API fixes for now.
const DefaultClustersetZone = "clusterset.local"

const (
	labelImportName    = "multicluster.kubernetes.io/service-name"
	labelSourceCluster = "multicluster.kubernetes.io/source-cluster"
)

// serviceImportGVRs are the versions of ServiceImport tried, newest first: v1beta1 is the storage
// version of mcs-api v0.5; clusters still on v1alpha1 serve the same fields.
var serviceImportGVRs = []schema.GroupVersionResource{
	{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceimports"},
	{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"},
}

// serviceImport is the part of a ServiceImport that names things.
type serviceImport struct {
	metav1.ObjectMeta
	Headless bool
	IPs      []string
	Ports    []importPort
}

type importPort struct {
	Name, Protocol string
	Port           int64
}

// GetObjectKind and DeepCopyObject make serviceImport a runtime.Object, which informers hand around.
func (si *serviceImport) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (si *serviceImport) DeepCopyObject() runtime.Object {
	out := *si
	si.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

// newServiceImport reads the fields we use out of an unstructured ServiceImport. Fields of the wrong
// type read as missing.
func newServiceImport(u *unstructured.Unstructured) *serviceImport {
	si := &serviceImport{ObjectMeta: metav1.ObjectMeta{
		Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
	}}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	kind, _, _ := unstructured.NestedString(spec, "type")
	si.Headless = kind == "Headless"
	si.IPs, _, _ = unstructured.NestedStringSlice(spec, "ips")
	ports, _, _ := unstructured.NestedSlice(spec, "ports")
	for _, p := range ports {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		var ip importPort
		ip.Name, _ = m["name"].(string)
		ip.Protocol, _ = m["protocol"].(string)
		switch n := m["port"].(type) {
		case int64:
			ip.Port = n
		case float64:
			ip.Port = int64(n)
		}
		si.Ports = append(si.Ports, ip)
	}
	return si
}

func trimServiceImport(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	return newServiceImport(u), nil
}

// zoneEntries are the clusterset zone itself, which makes the table its authority (a name under it
// that the table lacks is NXDOMAIN), and the dns-version record.
func zoneEntries(zone string) []table.Entry {
	return []table.Entry{
		{Host: zone, Registry: table.RegistryKubernetes, Authoritative: true},
		{Host: "dns-version." + zone, Registry: table.RegistryKubernetes, TXT: []string{DNSSchemaVersion}},
	}
}

// serviceImportEntries returns the names of a ServiceImport under zone:
//   - ClusterSetIP: <svc>.<ns>.svc.<zone> with the clusterset IPs (both families), and an SRV name
//     _<port>._<proto>.<svc>.<ns>.svc.<zone> per named port, pointing at it;
//   - Headless: <svc>.<ns>.svc.<zone> with every ready endpoint of every cluster,
//     <hostname>.<clusterid>.<svc>.<ns>.svc.<zone> per endpoint, and the SRV names pointing at those.
//
// Nothing disambiguates to one cluster's backends (<clusterid>.<svc>...): the table answers NXDOMAIN.
// A headless import without ready endpoints has no name at all (NXDOMAIN too, as the spec says).
// localCluster stands for slices without a source-cluster label.
func serviceImportEntries(si *serviceImport, eps []*kubewatch.EndpointSlice, zone, localCluster string) ([]table.Entry, []error) {
	host := si.Name + "." + si.Namespace + ".svc." + zone
	what := fmt.Sprintf("serviceimport %s/%s", si.Namespace, si.Name)
	var errs []error
	if err := table.ValidateHost(host); err != nil {
		return nil, []error{fmt.Errorf("%s: %v", what, err)}
	}
	e := table.Entry{Host: host, Registry: table.RegistryKubernetes, Namespace: si.Namespace}
	var targets []string // SRV targets
	var out []table.Entry
	if !si.Headless {
		for _, s := range si.IPs {
			a, err := netip.ParseAddr(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: ip %q is not an address", what, s))
				continue
			}
			e.Addrs = kubewatch.AppendNew(e.Addrs, []netip.Addr{a})
		}
		if len(e.Addrs) == 0 {
			return nil, errs // no clusterset IP yet: nothing to answer
		}
		out = append(out, e)
		targets = []string{host}
	} else {
		out = append(out, e)
		perEndpoint := map[string]int{} // host -> index in out
		for _, s := range addressSlices(eps) {
			cluster := s.Label(labelSourceCluster)
			if cluster == "" {
				cluster = localCluster
			}
			if cluster != "" && len(validation.IsDNS1123Label(cluster)) > 0 {
				errs = append(errs, fmt.Errorf("%s: endpointslice %s: source cluster %q is not a DNS label; its endpoints are left out", what, s.Name, cluster))
				continue
			}
			for _, ep := range s.Endpoints {
				if !ep.Ready {
					continue
				}
				addrs := ep.Addrs
				if len(addrs) == 0 {
					continue
				}
				out[0].Addrs = kubewatch.AppendNew(out[0].Addrs, addrs)
				if cluster == "" {
					continue // no cluster id: no per-endpoint name can be formed
				}
				hostname := endpointHostname(ep, addrs[0])
				if hostname == "" {
					errs = append(errs, fmt.Errorf("%s: endpointslice %s: hostname %q is not a DNS label; only the service name carries its addresses", what, s.Name, ep.Hostname))
					continue
				}
				h := hostname + "." + cluster + "." + host
				i, ok := perEndpoint[h]
				if !ok {
					i = len(out)
					perEndpoint[h] = i
					out = append(out, table.Entry{Host: h, Registry: table.RegistryKubernetes, Namespace: si.Namespace, Cluster: cluster})
					targets = append(targets, h)
				}
				out[i].Addrs = kubewatch.AppendNew(out[i].Addrs, addrs)
			}
		}
		if len(out[0].Addrs) == 0 {
			return nil, errs
		}
	}
	for _, p := range si.Ports {
		if p.Name == "" || p.Port <= 0 || p.Port > 65535 {
			continue // unnamed ports have no SRV record
		}
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		name := "_" + p.Name + "._" + proto + "." + host
		if err := table.ValidateHost(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: port %q: %v", what, p.Name, err))
			continue
		}
		srv := table.Entry{Host: name, Registry: table.RegistryKubernetes, Namespace: si.Namespace}
		for _, t := range targets {
			srv.SRV = append(srv.SRV, table.SRV{Weight: 100, Port: uint16(p.Port), Target: t})
		}
		out = append(out, srv)
	}
	return out, errs
}

// endpointHostname is the name of an endpoint in its per-endpoint record: its hostname, or else one
// made from its address as CoreDNS's kubernetes plugin makes it (10-1-2-3, fd00--1). "" when the
// hostname given is not a DNS label.
func endpointHostname(ep kubewatch.Endpoint, a netip.Addr) string {
	if ep.Hostname != "" {
		if len(validation.IsDNS1123Label(ep.Hostname)) > 0 {
			return ""
		}
		return ep.Hostname
	}
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.String(), ":", "-")
}
