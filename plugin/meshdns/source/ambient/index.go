package ambient

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/apimachinery/pkg/util/validation"
)

// index is the Address resources held, with what turns a change into the hosts it touches. It is
// used by one goroutine at a time (the xds client's, or a successor's Resume under the client's lock).
type index struct {
	clusterDomain string
	network       string

	services  map[string]*Service               // by resource name ("namespace/hostname")
	workloads map[string]*Workload              // by resource name (uid)
	byHost    map[string]set                    // canonical hostname -> service resource names
	members   map[string]set                    // "namespace/hostname" -> workload resource names
	byAddr    map[netip.Addr][]string           // address -> workload resource names (nearly always one: no set)
	podHosts  map[string]map[string]table.Entry // canonical hostname -> the per-pod hosts last given for it
}

type set = map[string]struct{}

func newIndex(clusterDomain, network string) *index {
	return &index{
		clusterDomain: clusterDomain, network: network,
		services: map[string]*Service{}, workloads: map[string]*Workload{},
		byHost: map[string]set{}, members: map[string]set{}, byAddr: map[netip.Addr][]string{}, podHosts: map[string]map[string]table.Entry{},
	}
}

// clone is a copy that shares nothing mutable with x (the decoded resources are never changed).
func (x *index) clone() *index {
	deep := func(m map[string]set) map[string]set {
		out := make(map[string]set, len(m))
		for k, v := range m {
			out[k] = maps.Clone(v)
		}
		return out
	}
	byAddr := make(map[netip.Addr][]string, len(x.byAddr))
	for k, v := range x.byAddr {
		byAddr[k] = slices.Clone(v)
	}
	podHosts := make(map[string]map[string]table.Entry, len(x.podHosts))
	for k, v := range x.podHosts {
		podHosts[k] = maps.Clone(v) // entries are values; their slices are never changed
	}
	return &index{
		clusterDomain: x.clusterDomain, network: x.network,
		services: maps.Clone(x.services), workloads: maps.Clone(x.workloads),
		byHost: deep(x.byHost), members: deep(x.members), byAddr: byAddr, podHosts: podHosts,
	}
}

// touched collects what a change affects: hosts whose entries to compute again, client addresses
// whose namespace to look up again.
type touched struct {
	hosts map[string]struct{}
	addrs map[netip.Addr]struct{}
}

func newTouched() *touched {
	return &touched{hosts: map[string]struct{}{}, addrs: map[netip.Addr]struct{}{}}
}

func (t *touched) workload(w *Workload) {
	if w == nil {
		return
	}
	for _, key := range w.Services {
		_, host, _ := strings.Cut(key, "/")
		t.hosts[table.CanonicalHost(host)] = struct{}{}
	}
	for _, a := range w.Addrs {
		t.addrs[a] = struct{}{}
	}
}

func (t *touched) service(s *Service) {
	if s != nil {
		t.hosts[table.CanonicalHost(s.Hostname)] = struct{}{}
	}
}

func add[K comparable](m map[K]set, k K, v string) {
	if m[k] == nil {
		m[k] = set{}
	}
	m[k][v] = struct{}{}
}

func remove[K comparable](m map[K]set, k K, v string) {
	delete(m[k], v)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// remove drops resource name, of either kind.
func (x *index) remove(name string, t *touched) {
	if s := x.services[name]; s != nil {
		t.service(s)
		remove(x.byHost, table.CanonicalHost(s.Hostname), name)
		delete(x.services, name)
	}
	if w := x.workloads[name]; w != nil {
		t.workload(w)
		for _, key := range w.Services {
			remove(x.members, key, name)
		}
		for _, a := range w.Addrs {
			x.byAddr[a] = slices.DeleteFunc(x.byAddr[a], func(n string) bool { return n == name })
			if len(x.byAddr[a]) == 0 {
				delete(x.byAddr, a)
			}
		}
		delete(x.workloads, name)
	}
}

// put replaces resource name with w or s.
func (x *index) put(name string, w *Workload, s *Service, t *touched) {
	x.remove(name, t)
	if s != nil {
		t.service(s)
		add(x.byHost, table.CanonicalHost(s.Hostname), name)
		x.services[name] = s
	}
	if w != nil {
		t.workload(w)
		for _, key := range w.Services {
			add(x.members, key, name)
		}
		for _, a := range w.Addrs {
			if !slices.Contains(x.byAddr[a], name) {
				x.byAddr[a] = append(x.byAddr[a], name)
			}
		}
		x.workloads[name] = w
	}
}

// onNetwork reports whether an address or workload of network n is reachable from the clients: one
// without a network is reachable from all; without a network of its own, the block takes every one
// (a single-network mesh may still name its network).
func (x *index) onNetwork(n string) bool { return n == "" || x.network == "" || n == x.network }

// changes returns the entries of each touched host, and of the per-pod hosts that changed with it
// (a pod of a large headless Service changes its own name, not its siblings'); an empty list removes
// a host.
func (x *index) changes(hosts map[string]struct{}) map[string][]table.Entry {
	out := make(map[string][]table.Entry, len(hosts))
	for h := range hosts {
		main, pods := x.hostEntries(h)
		out[h] = main
		old := x.podHosts[h]
		for ph := range old {
			if _, still := pods[ph]; !still {
				out[ph] = nil
			}
		}
		for ph, e := range pods {
			if o, ok := old[ph]; !ok || !o.Equal(&e) {
				out[ph] = []table.Entry{e}
			}
		}
		x.remember(h, pods)
	}
	return out
}

func (x *index) remember(h string, pods map[string]table.Entry) {
	if len(pods) == 0 {
		delete(x.podHosts, h)
	} else {
		x.podHosts[h] = pods
	}
}

// all returns the entries of every host, as a snapshot.
func (x *index) all() []table.Entry {
	out := []table.Entry{}
	for _, h := range slices.Sorted(maps.Keys(x.byHost)) {
		main, pods := x.hostEntries(h)
		out = append(out, main...)
		for _, ph := range slices.Sorted(maps.Keys(pods)) {
			out = append(out, pods[ph])
		}
		x.remember(h, pods)
	}
	for h := range x.podHosts {
		if _, ok := x.byHost[h]; !ok {
			delete(x.podHosts, h) // a Service gone
		}
	}
	return out
}

// hostEntries is what host h answers, as istiod's ambient index implies: the VIPs on the clients'
// network of the Services named h (only the canonical ones when some are, and only the Kubernetes
// Service when there is one); for a Kubernetes Service without any VIP (headless), the addresses of
// its healthy workloads on the network, and one <pod>.<h> host per pod. Services visible to their own
// namespace only count when no other is named h, and the names are then that namespace's alone
// (VisibleTo): one namespace's, the first by resource name, when several have one.
func (x *index) hostEntries(h string) ([]table.Entry, map[string]table.Entry) {
	var svcs, limited []*Service
	canonical := false
	for _, name := range slices.Sorted(maps.Keys(x.byHost[h])) {
		s := x.services[name]
		if s.NamespaceOnly {
			limited = append(limited, s)
			continue
		}
		svcs = append(svcs, s)
	}
	only := ""
	if len(svcs) == 0 && len(limited) > 0 {
		only = limited[0].Namespace
		svcs = slices.DeleteFunc(limited, func(s *Service) bool { return s.Namespace != only })
	}
	for _, s := range svcs {
		canonical = canonical || s.Canonical
	}
	if canonical {
		svcs = slices.DeleteFunc(svcs, func(s *Service) bool { return !s.Canonical })
	}
	// A Kubernetes Service beats a ServiceEntry of its host, as in the store's precedence.
	if slices.ContainsFunc(svcs, x.isKube) {
		svcs = slices.DeleteFunc(svcs, func(s *Service) bool { return !x.isKube(s) })
	}
	var (
		e    table.Entry
		kube bool
		pods map[string]table.Entry
	)
	e.Host = strings.TrimSuffix(h, ".") // h is canonical: lower case, a final dot
	e.Registry = table.RegistryExternal
	if only != "" {
		e.VisibleTo = []string{only}
	}
	for _, s := range svcs {
		if x.isKube(s) {
			kube = true
			e.Registry, e.ShortName, e.Namespace = table.RegistryKubernetes, s.Name, s.Namespace
		}
		for _, a := range s.Addresses {
			if !a.CIDR && x.onNetwork(a.Network) && !slices.Contains(e.Addrs, a.Addr) {
				e.Addrs = append(e.Addrs, a.Addr)
			}
		}
		if len(s.Addresses) == 0 && x.isKube(s) {
			pods = x.headless(s, &e, pods)
		}
	}
	if len(svcs) == 0 || !kube && len(e.Addrs) == 0 {
		return nil, pods
	}
	return []table.Entry{e}, pods
}

// isKube reports whether s is a Kubernetes Service, name.namespace.svc.DOMAIN, rather than a
// ServiceEntry host: it then gets the Kubernetes short forms.
func (x *index) isKube(s *Service) bool {
	return strings.EqualFold(s.Hostname, s.Name+"."+s.Namespace+".svc."+x.clusterDomain)
}

// headless adds the addresses of headless Service s's healthy workloads to e, and their per-pod
// hosts to pods (made when needed), in workload name order so answers do not depend on map order.
func (x *index) headless(s *Service, e *table.Entry, pods map[string]table.Entry) map[string]table.Entry {
	members := x.members[s.Namespace+"/"+s.Hostname]
	ws := make([]*Workload, 0, len(members))
	for name := range members {
		if w := x.workloads[name]; w.Healthy && x.onNetwork(w.Network) {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b *Workload) int { return strings.Compare(a.Name+"/"+a.UID, b.Name+"/"+b.UID) })
	for _, w := range ws {
		for _, a := range w.Addrs {
			if !slices.Contains(e.Addrs, a) {
				e.Addrs = append(e.Addrs, a)
			}
		}
		if w.Name == "" || len(validation.IsDNS1123Label(w.Name)) > 0 || len(w.Addrs) == 0 {
			continue
		}
		if pods == nil {
			pods = map[string]table.Entry{}
		}
		ph := table.CanonicalHost(w.Name + "." + e.Host)
		p, ok := pods[ph]
		if !ok {
			p = table.Entry{Host: strings.TrimSuffix(ph, "."), Registry: table.RegistryKubernetes, ShortName: w.Name + "." + s.Name, Namespace: s.Namespace,
				VisibleTo: e.VisibleTo}
		}
		for _, a := range w.Addrs {
			if !slices.Contains(p.Addrs, a) {
				p.Addrs = append(p.Addrs, a)
			}
		}
		pods[ph] = p
	}
	return pods
}

// namespaceOf is the namespace of the workloads at a, when they agree: a host-network workload has
// its node's address, which says nothing of who sends from it, and workloads of other networks may
// reuse addresses of this one.
func (x *index) namespaceOf(a netip.Addr) (string, bool) {
	ns := ""
	for _, name := range x.byAddr[a] {
		w := x.workloads[name]
		if w.HostNetwork || !x.onNetwork(w.Network) {
			continue
		}
		if ns != "" && ns != w.Namespace {
			return "", false
		}
		ns = w.Namespace
	}
	return ns, ns != ""
}
