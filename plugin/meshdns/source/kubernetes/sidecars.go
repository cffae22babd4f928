package kubernetes

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// sidecarGVR is Istio's Sidecar, served as v1 by every Istio since 1.22.
var sidecarGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "sidecars"}

// sidecar is the part of an Istio Sidecar that limits names, which is all the informer keeps.
type sidecar struct {
	metav1.ObjectMeta
	Selector bool       // it has a workloadSelector: it applies to some pods only, which a resolver cannot tell
	Egress   [][]string // spec.egress[i].hosts; nil: no egress, every host of every namespace
}

func (sc *sidecar) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (sc *sidecar) DeepCopyObject() runtime.Object {
	out := *sc
	sc.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

// newSidecar reads the fields we use out of an unstructured Sidecar; fields of the wrong type read as
// missing (the API server checked the schema).
func newSidecar(u *unstructured.Unstructured) *sidecar {
	sc := &sidecar{ObjectMeta: metav1.ObjectMeta{
		Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
		CreationTimestamp: u.GetCreationTimestamp(),
	}}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	_, sc.Selector = spec["workloadSelector"].(map[string]any)
	egress, _, _ := unstructured.NestedSlice(spec, "egress")
	for _, e := range egress {
		m, _ := e.(map[string]any)
		hosts, _, _ := unstructured.NestedStringSlice(m, "hosts")
		sc.Egress = append(sc.Egress, hosts)
	}
	return sc
}

func trimSidecar(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	return newSidecar(u), nil
}

// egressHost is one "namespace/host" of a Sidecar's egress.
type egressHost struct {
	raw      string
	ns       string // "*", "." (the client's namespace) or a namespace
	host     string // lower case; "*" or "*.suffix" are wildcards
	excluded bool   // "~ns/host": never imported from ns ("~/host": from any namespace)
}

// sidecarRules is a namespace-wide Sidecar's egress, parsed.
type sidecarRules struct {
	name  string // "ns/name"
	hosts []egressHost
	all   bool   // no egress given: "*/*"
	sig   string // what it imports, written out: Sidecars with the same import the same
}

// parseEgressHost reads "ns/host" as istiod's convertIstioListenerToWrapper does.
func parseEgressHost(h string) (egressHost, error) {
	if strings.Count(h, "/") != 1 {
		return egressHost{}, fmt.Errorf("%q is not NAMESPACE/HOST", h)
	}
	ns, name, _ := strings.Cut(h, "/")
	eh := egressHost{raw: h, host: strings.ToLower(name)}
	if rest, ok := strings.CutPrefix(ns, "~"); ok {
		eh.excluded, ns = true, rest
		if ns == "" {
			ns = "*"
		}
	}
	if ns == "" || name == "" {
		return egressHost{}, fmt.Errorf("%q has an empty namespace or host", h)
	}
	if i := strings.LastIndex(name, "*"); i > 0 || (i == 0 && name != "*" && !strings.HasPrefix(name, "*.")) {
		return egressHost{}, fmt.Errorf("%q: a wildcard host is * or *.SUFFIX", h)
	}
	eh.ns = ns
	return eh, nil
}

// parseSidecar parses sc's egress hosts; hosts that do not parse are left out and reported, naming
// the Sidecar and the field.
func parseSidecar(sc *sidecar) (*sidecarRules, []error) {
	r := &sidecarRules{name: sc.Namespace + "/" + sc.Name, all: len(sc.Egress) == 0}
	var errs []error
	for i, hosts := range sc.Egress {
		for j, h := range hosts {
			eh, err := parseEgressHost(h)
			if err != nil {
				errs = append(errs, fmt.Errorf("sidecar %s: spec.egress[%d].hosts[%d]: %v", r.name, i, j, err))
				continue
			}
			r.hosts = append(r.hosts, eh)
		}
	}
	r.sig = fmt.Sprint(r.all, r.egress())
	return r, errs
}

// imports reports whether a client of namespace client, under this Sidecar, gets the host svcHost of
// an object in namespace ns, and by which egress host (or which excludes it). Exclusions ("~") win;
// then the hosts of the object's namespace, then those of "*".
func (r *sidecarRules) imports(ns, svcHost, client string) (bool, string) {
	if r.all {
		return true, "no egress: */*"
	}
	h := strings.ToLower(strings.TrimSuffix(svcHost, "."))
	applies := func(eh egressHost) bool {
		key := eh.ns
		if key == "." {
			key = client
		}
		return key == ns || key == "*"
	}
	for _, eh := range r.hosts {
		if eh.excluded && applies(eh) && subsetOf(h, eh.host) {
			return false, "excluded by " + eh.raw
		}
	}
	for _, eh := range r.hosts {
		if !eh.excluded && applies(eh) && subsetOf(h, eh.host) {
			return true, eh.raw
		}
	}
	return false, "no egress host matches"
}

// egress lists the Sidecar's egress hosts as written, for the debug endpoint.
func (r *sidecarRules) egress() []string {
	if r.all {
		return []string{"*/*"}
	}
	out := make([]string, 0, len(r.hosts))
	for _, eh := range r.hosts {
		out = append(out, eh.raw)
	}
	return out
}

// subsetOf is istio's host.Name.SubsetOf: every name n matches is matched by o.
func subsetOf(n, o string) bool {
	nw, ow := strings.HasPrefix(n, "*"), strings.HasPrefix(o, "*")
	switch {
	case nw && ow:
		return len(n) >= len(o) && strings.HasSuffix(n[1:], o[1:])
	case nw:
		return false
	case ow:
		return strings.HasSuffix(n, o[1:])
	}
	return n == o
}

// namespaceSidecars picks each namespace's namespace-wide Sidecar: the oldest without a
// workloadSelector, as istiod does (it applies one per namespace).
func namespaceSidecars(all []*sidecar) (map[string]*sidecarRules, []error) {
	slices.SortFunc(all, func(a, b *sidecar) int {
		if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	out := map[string]*sidecarRules{}
	var errs []error
	for _, sc := range all {
		if sc.Selector || out[sc.Namespace] != nil {
			continue
		}
		r, e := parseSidecar(sc)
		out[sc.Namespace] = r
		errs = append(errs, e...)
	}
	return out, errs
}
