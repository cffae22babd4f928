package ambient

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// The resources of a small ambient mesh, as istiod names and fills them.
var (
	reviewsSvc = &Service{Name: "reviews", Namespace: "default", Hostname: "reviews.default.svc.cluster.local", Canonical: true,
		Addresses: append(vips("", "10.96.0.12", "fd00::12"), vips("west", "10.200.0.12")...)}
	dbSvc  = &Service{Name: "db", Namespace: "default", Hostname: "db.default.svc.cluster.local", Canonical: true}
	db0    = &Workload{UID: "Kubernetes//Pod/default/db-0", Name: "db-0", Namespace: "default", Addrs: addrs("10.244.0.10"), Services: []string{"default/db.default.svc.cluster.local"}, Healthy: true, Pod: true}
	db1    = &Workload{UID: "Kubernetes//Pod/default/db-1", Name: "db-1", Namespace: "default", Addrs: addrs("10.244.0.11"), Services: []string{"default/db.default.svc.cluster.local"}, Healthy: true, Pod: true}
	db2    = &Workload{UID: "Kubernetes//Pod/default/db-2", Name: "db-2", Namespace: "default", Addrs: addrs("10.244.0.12"), Services: []string{"default/db.default.svc.cluster.local"}, Healthy: false, Pod: true}
	dbWest = &Workload{UID: "west//Pod/default/db-9", Name: "db-9", Namespace: "default", Network: "west", Addrs: addrs("10.250.0.9"), Services: []string{"default/db.default.svc.cluster.local"}, Healthy: true, Pod: true}
	autoSE = &Service{Name: "auto", Namespace: "default", Hostname: "auto.example.org", Canonical: true, Addresses: vips("", "240.240.0.1", "2001:2::1")}
	wildSE = &Service{Name: "wild", Namespace: "default", Hostname: "*.wild.example.com", Canonical: true, Addresses: vips("", "240.0.0.9")}
	cidrSE = &Service{Name: "range", Namespace: "default", Hostname: "range.example.org", Addresses: []NetworkAddress{{Addr: netip.MustParseAddr("10.10.0.0"), CIDR: true}}}
)

func kube(host, short, ns string, as ...string) table.Entry {
	return table.Entry{Host: host, Registry: table.RegistryKubernetes, ShortName: short, Namespace: ns, Addrs: addrs(as...)}
}

func external(host string, as ...string) table.Entry {
	return table.Entry{Host: host, Registry: table.RegistryExternal, Addrs: addrs(as...)}
}

func TestEntries(t *testing.T) {
	type res struct {
		name string
		w    *Workload
		s    *Service
	}
	svc := func(s *Service) res { return res{s.Namespace + "/" + s.Hostname, nil, s} }
	wl := func(w *Workload) res { return res{w.UID, w, nil} }
	tests := []struct {
		name    string
		network string
		in      []res
		want    []table.Entry
	}{
		{"a ClusterIP Service: the VIPs of no network and of ours, both families", "east",
			[]res{svc(reviewsSvc)}, []table.Entry{kube("reviews.default.svc.cluster.local", "reviews", "default", "10.96.0.12", "fd00::12")}},
		{"from network west", "west",
			[]res{svc(reviewsSvc)}, []table.Entry{kube("reviews.default.svc.cluster.local", "reviews", "default", "10.96.0.12", "fd00::12", "10.200.0.12")}},
		{"no network of our own: every VIP", "",
			[]res{svc(reviewsSvc)}, []table.Entry{kube("reviews.default.svc.cluster.local", "reviews", "default", "10.96.0.12", "fd00::12", "10.200.0.12")}},
		{"headless: healthy workloads of our network, per-pod names", "east",
			[]res{svc(dbSvc), wl(db1), wl(db0), wl(db2), wl(dbWest)}, []table.Entry{
				kube("db.default.svc.cluster.local", "db", "default", "10.244.0.10", "10.244.0.11"),
				kube("db-0.db.default.svc.cluster.local", "db-0.db", "default", "10.244.0.10"),
				kube("db-1.db.default.svc.cluster.local", "db-1.db", "default", "10.244.0.11"),
			}},
		{"headless with no ready pod: a known name without addresses", "",
			[]res{svc(dbSvc), wl(db2)}, []table.Entry{kube("db.default.svc.cluster.local", "db", "default")}},
		{"workloads of a Service not sent (yet): nothing", "", []res{wl(db0)}, []table.Entry{}},
		{"ServiceEntries: allocated addresses, wildcards; CIDRs name no host", "",
			[]res{svc(autoSE), svc(wildSE), svc(cidrSE)}, []table.Entry{
				external("*.wild.example.com", "240.0.0.9"),
				external("auto.example.org", "240.240.0.1", "2001:2::1"),
			}},
		{"the same host in two namespaces: the canonical one", "",
			[]res{svc(&Service{Name: "x", Namespace: "a", Hostname: "x.example", Addresses: vips("", "240.0.0.1")}),
				svc(&Service{Name: "x", Namespace: "b", Hostname: "x.example", Canonical: true, Addresses: vips("", "240.0.0.2")})},
			[]table.Entry{external("x.example", "240.0.0.2")}},
		{"the same host, neither canonical: both", "",
			[]res{svc(&Service{Name: "x", Namespace: "a", Hostname: "x.example", Addresses: vips("", "240.0.0.1")}),
				svc(&Service{Name: "x", Namespace: "b", Hostname: "x.example", Addresses: vips("", "240.0.0.2")})},
			[]table.Entry{external("x.example", "240.0.0.1", "240.0.0.2")}},
		{"a ServiceEntry of another namespace on a Kubernetes Service's host: the Service", "",
			[]res{svc(reviewsSvc), svc(&Service{Name: "shadow", Namespace: "other", Hostname: "reviews.default.svc.cluster.local", Canonical: true, Addresses: vips("", "240.0.0.99")})},
			[]table.Entry{kube("reviews.default.svc.cluster.local", "reviews", "default", "10.96.0.12", "fd00::12", "10.200.0.12")}},
		{"visible to its namespace only: that namespace's name", "",
			[]res{svc(&Service{Name: "p", Namespace: "a", Hostname: "p.example", NamespaceOnly: true, Addresses: vips("", "240.0.9.9")})},
			[]table.Entry{{Host: "p.example", Registry: table.RegistryExternal, Addrs: addrs("240.0.9.9"), VisibleTo: []string{"a"}}}},
		{"limited in two namespaces: the first's", "",
			[]res{svc(&Service{Name: "p", Namespace: "b", Hostname: "p.example", NamespaceOnly: true, Addresses: vips("", "240.0.9.8")}),
				svc(&Service{Name: "p", Namespace: "a", Hostname: "p.example", NamespaceOnly: true, Addresses: vips("", "240.0.9.9")})},
			[]table.Entry{{Host: "p.example", Registry: table.RegistryExternal, Addrs: addrs("240.0.9.9"), VisibleTo: []string{"a"}}}},
		{"limited and public: the public one, for everyone", "",
			[]res{svc(&Service{Name: "p", Namespace: "a", Hostname: "p.example", NamespaceOnly: true, Addresses: vips("", "240.0.9.9")}),
				svc(&Service{Name: "p", Namespace: "b", Hostname: "p.example", Canonical: true, Addresses: vips("", "240.0.9.8")})},
			[]table.Entry{external("p.example", "240.0.9.8")}},
	}
	for _, tc := range tests {
		x := newIndex("cluster.local", tc.network)
		tt := newTouched()
		for _, r := range tc.in {
			x.put(r.name, r.w, r.s, tt)
		}
		if got := x.all(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// TestChanges: a change names exactly the hosts it touches, and removals (of a pod, of a Service)
// empty the hosts that are gone.
func TestChanges(t *testing.T) {
	x := newIndex("cluster.local", "")
	tt := newTouched()
	x.put("default/db.default.svc.cluster.local", nil, dbSvc, tt)
	x.put(db0.UID, db0, nil, tt)
	x.put("default/reviews.default.svc.cluster.local", nil, reviewsSvc, tt)
	x.all()

	tt = newTouched()
	x.put(db1.UID, db1, nil, tt)
	got := x.changes(tt.hosts)
	want := map[string][]table.Entry{
		"db.default.svc.cluster.local.":      {kube("db.default.svc.cluster.local", "db", "default", "10.244.0.10", "10.244.0.11")},
		"db-1.db.default.svc.cluster.local.": {kube("db-1.db.default.svc.cluster.local", "db-1.db", "default", "10.244.0.11")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("adding a pod (its sibling's name unchanged):\n got %+v\nwant %+v", got, want)
	}

	tt = newTouched()
	x.remove(db0.UID, tt)
	got = x.changes(tt.hosts)
	if len(got) != 2 || got["db-0.db.default.svc.cluster.local."] != nil || len(got["db.default.svc.cluster.local."]) != 1 || len(got["db.default.svc.cluster.local."][0].Addrs) != 1 {
		t.Errorf("removing a pod: %+v", got)
	}

	tt = newTouched()
	x.remove("default/db.default.svc.cluster.local", tt)
	got = x.changes(tt.hosts)
	if len(got) != 2 || got["db.default.svc.cluster.local."] != nil || got["db-1.db.default.svc.cluster.local."] != nil {
		t.Errorf("removing the Service: %+v", got)
	}
	if n, ok := x.namespaceOf(netip.MustParseAddr("10.244.0.11")); !ok || n != "default" {
		t.Errorf("the pod of a removed Service is still a client of default: %q %v", n, ok)
	}
}

func TestNamespaceOf(t *testing.T) {
	x := newIndex("cluster.local", "east")
	tt := newTouched()
	x.put("a", &Workload{UID: "a", Namespace: "shop", Addrs: addrs("10.0.0.1", "fd00::1")}, nil, tt)
	x.put("b", &Workload{UID: "b", Namespace: "shop", Addrs: addrs("10.0.0.2")}, nil, tt)
	x.put("c", &Workload{UID: "c", Namespace: "bank", Addrs: addrs("10.0.0.2")}, nil, tt)                           // the same address, another namespace
	x.put("d", &Workload{UID: "d", Namespace: "kube-system", Addrs: addrs("10.0.0.3"), HostNetwork: true}, nil, tt) // a node's address
	x.put("e", &Workload{UID: "e", Namespace: "far", Network: "west", Addrs: addrs("10.0.0.4")}, nil, tt)           // another network's
	for _, tc := range []struct {
		addr, ns string
		ok       bool
	}{
		{"10.0.0.1", "shop", true}, {"fd00::1", "shop", true}, {"10.0.0.2", "", false}, {"10.0.0.3", "", false}, {"10.0.0.4", "", false}, {"10.9.9.9", "", false},
	} {
		if ns, ok := x.namespaceOf(netip.MustParseAddr(tc.addr)); ns != tc.ns || ok != tc.ok {
			t.Errorf("%s: %q %v, want %q %v", tc.addr, ns, ok, tc.ns, tc.ok)
		}
	}
	x.remove("c", tt)
	if ns, _ := x.namespaceOf(netip.MustParseAddr("10.0.0.2")); ns != "shop" {
		t.Errorf("after the other namespace's workload left: %q", ns)
	}
}

func TestCloneSharesNothing(t *testing.T) {
	x := newIndex("cluster.local", "")
	tt := newTouched()
	x.put("default/db.default.svc.cluster.local", nil, dbSvc, tt)
	x.put(db0.UID, db0, nil, tt)
	x.all()
	y := x.clone()
	y.put(db1.UID, db1, nil, newTouched())
	y.remove(db0.UID, newTouched())
	y.all()
	if len(x.members["default/db.default.svc.cluster.local"]) != 1 || len(x.podHosts["db.default.svc.cluster.local."]) != 1 || len(x.workloads) != 1 {
		t.Errorf("the original changed with its clone: %+v", x)
	}
}
