package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	corev1 "k8s.io/api/core/v1"
)

func svcWith(ns, name, exportTo string) *corev1.Service {
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = ns, name
	if exportTo != "" {
		svc.Annotations = map[string]string{exportToAnnotation: exportTo}
	}
	return svc
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// svcCand is a Service ns/name (host name.ns.svc.cluster.local) with exportTo annotation value ann.
func svcCand(ns, name, ann string, age int, addr string) candidate {
	h := name + "." + ns + ".svc.cluster.local"
	m := serviceMeta(kept(svcWith(ns, name, ann)))
	m.created = t0.Add(time.Duration(age) * time.Minute)
	return candidate{key: "s/" + ns + "/" + name, objectMeta: m, svcHost: h,
		entries: []table.Entry{{Host: h, Addrs: []netip.Addr{netip.MustParseAddr(addr)}, Registry: table.RegistryKubernetes, Namespace: ns, ShortName: name}}}
}

// seCand is a ServiceEntry ns/name for host with spec.exportTo exportTo.
func seCand(ns, name, host string, exportTo []string, age int, addr string) candidate {
	return candidate{key: "e/" + ns + "/" + name, objectMeta: objectMeta{name: name, ns: ns, created: t0.Add(time.Duration(age) * time.Minute),
		exportTo: exportTo, field: "spec.exportTo"}, svcHost: host,
		entries: []table.Entry{{Host: host, Addrs: []netip.Addr{netip.MustParseAddr(addr)}, Registry: table.RegistryExternal}}}
}

// seen is what a client of ns gets from published entries: the addresses of the entries it sees.
// Every entry it sees must have the same visibility (one variant per namespace).
func seen(t *testing.T, entries []table.Entry, ns string) string {
	t.Helper()
	var out []string
	var first *table.Entry
	for i := range entries {
		e := &entries[i]
		if !e.SeenFrom(ns) {
			continue
		}
		if first == nil {
			first = e
		} else if !slices.Equal(first.VisibleTo, e.VisibleTo) || !slices.Equal(first.HiddenFrom, e.HiddenFrom) {
			t.Errorf("namespace %s sees two variants: %v/%v and %v/%v", ns, first.VisibleTo, first.HiddenFrom, e.VisibleTo, e.HiddenFrom)
		}
		for _, a := range e.Addrs {
			out = append(out, a.String())
		}
	}
	return strings.Join(out, ",")
}

func sidecarOf(ns, name string, age int, selector bool, egress ...[]string) *sidecar {
	sc := &sidecar{Selector: selector, Egress: egress}
	sc.Namespace, sc.Name = ns, name
	sc.CreationTimestamp.Time = t0.Add(time.Duration(age) * time.Minute)
	return sc
}

func visWith(t *testing.T, mesh string, sidecars ...*sidecar) visibility {
	t.Helper()
	var d meshDefaults
	if mesh != "" {
		var err error
		if d, err = parseMeshConfig("mesh.yaml", []byte(mesh)); err != nil {
			t.Fatal(err)
		}
	}
	own, errs := namespaceSidecars(sidecars)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return newVisibility(d, own)
}

func TestExportToForms(t *testing.T) {
	for _, tc := range []struct {
		ann        string
		mesh       string
		visibleTo  []string // nil: every namespace
		hiddenFrom []string
		none       bool
	}{
		{ann: ""},
		{ann: "*"},
		{ann: "."},
		{ann: "~", none: true},
		{ann: "shop", visibleTo: []string{"shop"}},
		{ann: " a , b ", visibleTo: []string{"a", "b"}},
		{ann: ".,front", visibleTo: []string{"front", "shop"}},
		{ann: "front,*", visibleTo: nil},
		{ann: "~,*", visibleTo: nil},
		{ann: "~,front", none: true},
		{ann: "a,,b", visibleTo: []string{"a", "b"}},
		{ann: "", mesh: "defaultServiceExportTo: [.]", visibleTo: []string{"shop"}},
		{ann: "", mesh: "defaultServiceExportTo: [\"~\"]", none: true},
		{ann: "", mesh: "defaultServiceExportTo: [front, .]", visibleTo: []string{"front", "shop"}},
		{ann: "", mesh: "defaultServiceExportTo: []"},
		{ann: "*", mesh: "defaultServiceExportTo: [.]"},
	} {
		v := visWith(t, tc.mesh)
		c := svcCand("shop", "web", tc.ann, 0, "10.0.0.1")
		got := v.resolve([]candidate{c})
		want := tc.visibleTo
		if tc.ann == "." {
			want = []string{"shop"}
		}
		switch {
		case tc.none:
			if len(got) != 0 {
				t.Errorf("exportTo %q mesh %q: got %+v, want nothing", tc.ann, tc.mesh, got)
			}
		case len(got) != 1 || !slices.Equal(got[0].VisibleTo, want) || (want == nil) != (got[0].VisibleTo == nil) ||
			!slices.Equal(got[0].HiddenFrom, tc.hiddenFrom):
			t.Errorf("exportTo %q mesh %q: got %+v, want visible to %v", tc.ann, tc.mesh, got, want)
		}
	}
	// A ServiceEntry's spec.exportTo reads the same way, with the same mesh default.
	v := visWith(t, "defaultServiceExportTo: [.]")
	got := v.resolve([]candidate{seCand("ext", "api", "api.example.com", nil, 0, "240.0.0.1")})
	if len(got) != 1 || !slices.Equal(got[0].VisibleTo, []string{"ext"}) {
		t.Errorf("ServiceEntry with the default [.]: %+v", got)
	}
	got = v.resolve([]candidate{seCand("ext", "api", "api.example.com", []string{"*"}, 0, "240.0.0.1")})
	if len(got) != 1 || got[0].Limited() {
		t.Errorf("ServiceEntry exportTo [*]: %+v", got)
	}
}

func TestSidecarEgress(t *testing.T) {
	web := svcCand("shop", "web", "", 0, "10.0.0.1")
	api := seCand("ext", "api", "api.example.com", nil, 0, "240.0.0.1")
	wild := seCand("ext", "wild", "*.wild.example.com", nil, 0, "240.0.0.2")
	for _, tc := range []struct {
		name     string
		egress   []string // of namespace "front"'s Sidecar
		cand     candidate
		visible  bool
		selector bool
	}{
		{"own namespace only", []string{"./*"}, web, false, false},
		{"its namespace", []string{"shop/*"}, web, true, false},
		{"every namespace", []string{"*/*"}, web, true, false},
		{"exact host any namespace", []string{"*/web.shop.svc.cluster.local"}, web, true, false},
		{"exact host other namespace", []string{"ext/web.shop.svc.cluster.local"}, web, false, false},
		{"suffix wildcard", []string{"*/*.svc.cluster.local"}, web, true, false},
		{"suffix wildcard no match", []string{"*/*.example.com"}, web, false, false},
		{"excluded in namespace", []string{"*/*", "~shop/web.shop.svc.cluster.local"}, web, false, false},
		{"excluded everywhere", []string{"*/*", "~/*.cluster.local"}, web, false, false},
		{"excluded other namespace", []string{"*/*", "~ext/*"}, web, true, false},
		{"exclusion of own namespace", []string{"*/*", "~./*"}, web, true, false},
		{"serviceentry host", []string{"ext/api.example.com"}, api, true, false},
		{"wildcard serviceentry by wider wildcard", []string{"*/*.example.com"}, wild, true, false},
		{"wildcard serviceentry by exact", []string{"*/a.wild.example.com"}, wild, false, false},
		{"wildcard serviceentry by *", []string{"ext/*"}, wild, true, false},
		{"workload selector ignored", []string{"./*"}, web, true, true},
	} {
		v := visWith(t, "", sidecarOf("front", "default", 0, tc.selector, tc.egress))
		got := v.resolve([]candidate{tc.cand})
		if s := seen(t, got, "front"); (s != "") != tc.visible {
			t.Errorf("%s: front sees %q, want visible %v (%+v)", tc.name, s, tc.visible, got)
		}
		if s := seen(t, got, "elsewhere"); s == "" {
			t.Errorf("%s: a namespace without a Sidecar does not see it", tc.name)
		}
		if s := seen(t, got, tc.cand.ns); s == "" {
			t.Errorf("%s: its own namespace does not see it", tc.name)
		}
	}
	// No egress at all imports everything.
	v := visWith(t, "", sidecarOf("front", "default", 0, false))
	if got := v.resolve([]candidate{web}); seen(t, got, "front") == "" {
		t.Errorf("Sidecar without egress: %+v", got)
	}
	// Of two namespace-wide Sidecars the oldest applies.
	v = visWith(t, "", sidecarOf("front", "new", 5, false, []string{"*/*"}), sidecarOf("front", "old", 1, false, []string{"./*"}))
	if got := v.resolve([]candidate{web}); seen(t, got, "front") != "" {
		t.Errorf("the newer Sidecar applied: %+v", got)
	}
}

func TestRootSidecar(t *testing.T) {
	web := svcCand("shop", "web", "", 0, "10.0.0.1")
	root := sidecarOf("istio-system", "default", 0, false, []string{"./*", "istio-system/*"})
	v := visWith(t, "", root)
	got := v.resolve([]candidate{web})
	if len(got) != 1 || !slices.Equal(got[0].VisibleTo, []string{"shop"}) {
		t.Fatalf("root Sidecar ./*: %+v, want visible to shop only", got)
	}
	// A namespace with a Sidecar of its own does not use the root one.
	v = visWith(t, "", root, sidecarOf("front", "default", 0, false, []string{"shop/*"}))
	got = v.resolve([]candidate{web})
	if seen(t, got, "front") == "" || seen(t, got, "shop") == "" || seen(t, got, "other") != "" {
		t.Fatalf("root and front's own: %+v", got)
	}
	// The root namespace is the mesh config's.
	v = visWith(t, "rootNamespace: mesh-root", sidecarOf("istio-system", "default", 0, false, []string{"./*"}))
	if got := v.resolve([]candidate{web}); seen(t, got, "other") == "" {
		t.Fatalf("istio-system's Sidecar applied with rootNamespace mesh-root: %+v", got)
	}
	v = visWith(t, "rootNamespace: mesh-root", sidecarOf("mesh-root", "default", 0, false, []string{"./*"}))
	if got := v.resolve([]candidate{web}); seen(t, got, "other") != "" || seen(t, got, "mesh-root") != "" {
		t.Fatalf("mesh-root's Sidecar: %+v", got)
	}
	// A root Sidecar with a workload selector is no root Sidecar.
	v = visWith(t, "", sidecarOf("istio-system", "some", 0, true, []string{"./*"}))
	if got := v.resolve([]candidate{web}); seen(t, got, "other") == "" {
		t.Fatalf("root Sidecar with a selector applied: %+v", got)
	}
}

func TestPrecedence(t *testing.T) {
	v := visWith(t, "")
	// The same host from two namespaces: each prefers its own, the others the oldest.
	a := seCand("a", "api", "api.example.com", nil, 1, "240.0.0.1")
	b := seCand("b", "api", "api.example.com", nil, 2, "240.0.0.2")
	got := v.resolve([]candidate{b, a})
	for ns, want := range map[string]string{"a": "240.0.0.1", "b": "240.0.0.2", "c": "240.0.0.1"} {
		if s := seen(t, got, ns); s != want {
			t.Errorf("two namespaces: %s sees %q, want %q", ns, s, want)
		}
	}
	if len(got) != 2 || got[0].VisibleTo != nil {
		t.Errorf("two namespaces: the first variant is not the one most namespaces see: %+v", got)
	}
	// A Kubernetes Service beats a ServiceEntry of another namespace, even an older one, but not in
	// the ServiceEntry's own namespace.
	se := seCand("x", "shadow", "web.shop.svc.cluster.local", nil, 0, "240.0.0.9")
	web := svcCand("shop", "web", "", 5, "10.0.0.1")
	got = v.resolve([]candidate{se, web})
	for ns, want := range map[string]string{"x": "240.0.0.9", "shop": "10.0.0.1", "c": "10.0.0.1"} {
		if s := seen(t, got, ns); s != want {
			t.Errorf("service and entry: %s sees %q, want %q", ns, s, want)
		}
	}
	// In one namespace the Service answers alone.
	same := seCand("shop", "shadow", "web.shop.svc.cluster.local", nil, 0, "240.0.0.9")
	if s := seen(t, v.resolve([]candidate{same, web}), "c"); s != "10.0.0.1" {
		t.Errorf("service and entry of one namespace: %q", s)
	}
	// ServiceEntries of one namespace answer together.
	a2 := seCand("a", "api2", "api.example.com", nil, 3, "240.0.0.3")
	if s := seen(t, v.resolve([]candidate{a, a2, b}), "c"); s != "240.0.0.1,240.0.0.3" {
		t.Errorf("two entries of one namespace: %q", s)
	}
	// Exported by name beats public, even older.
	old := seCand("a", "api", "api.example.com", nil, 1, "240.0.0.1")
	named := seCand("b", "api", "api.example.com", []string{"c"}, 9, "240.0.0.2")
	got = v.resolve([]candidate{old, named})
	if s := seen(t, got, "c"); s != "240.0.0.2" {
		t.Errorf("exported by name: c sees %q", s)
	}
	if s := seen(t, got, "d"); s != "240.0.0.1" {
		t.Errorf("exported by name: d sees %q", s)
	}
	// The client's own namespace's object is preferred only if its Sidecar imports it.
	v = visWith(t, "", sidecarOf("a", "default", 0, false, []string{"b/*"}))
	if s := seen(t, v.resolve([]candidate{a, b}), "a"); s != "240.0.0.2" {
		t.Errorf("own namespace not imported: a sees %q", s)
	}
}

func TestPerPodNamesFollowTheService(t *testing.T) {
	db := svcCand("data", "db", "", 0, "10.1.0.1")
	pod := db
	pod.entries = []table.Entry{{Host: "db-0.db.data.svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.1")}, Registry: table.RegistryKubernetes}}
	v := visWith(t, "", sidecarOf("front", "default", 0, false, []string{"data/db.data.svc.cluster.local"}))
	if s := seen(t, v.resolve([]candidate{pod}), "front"); s != "10.1.0.1" {
		t.Errorf("per-pod name with the Service imported: %q", s)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"rootNamespace: [a]", "mesh config m.yaml: rootNamespace"},
		{"defaultServiceExportTo: .", "mesh config m.yaml: defaultServiceExportTo: want a list"},
		{"defaultServiceExportTo: [1]", "defaultServiceExportTo[0]: want a string"},
		{"defaultServiceExportTo: [Not_A_Namespace]", "defaultServiceExportTo: \"Not_A_Namespace\""},
		{"a: [", "mesh config m.yaml"},
	} {
		if _, err := parseMeshConfig("m.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	d, err := parseMeshConfig("m.yaml", []byte("trustDomain: cluster.local\nrootNamespace: root\ndefaultServiceExportTo: [\"*\"]\ndefaultConfig:\n  discoveryAddress: x\n"))
	if err != nil || d.rootNamespace() != "root" || !slices.Equal(d.serviceExportTo(), []string{"*"}) {
		t.Errorf("good mesh config: %+v, %v", d, err)
	}
	d, err = parseMeshConfig("cm.yaml", []byte("apiVersion: v1\nkind: ConfigMap\ndata:\n  mesh: |-\n    rootNamespace: cm-root\n"))
	if err != nil || d.rootNamespace() != "cm-root" {
		t.Errorf("the istio ConfigMap: %+v, %v", d, err)
	}
	_, errs := namespaceSidecars([]*sidecar{sidecarOf("front", "default", 0, false, []string{"./*", "bad", "a/b/c", "/x", "ns/a*.b", "ns/*x"})})
	if len(errs) != 5 {
		t.Fatalf("errors %v, want 5", errs)
	}
	if !strings.Contains(errs[0].Error(), "sidecar front/default: spec.egress[0].hosts[1]") {
		t.Errorf("error %v does not name the Sidecar and field", errs[0])
	}
	if errs := checkExportTo([]string{".", "*", "~", "ns", "No"}, "service a/b", "annotation "+exportToAnnotation); len(errs) != 1 ||
		!strings.Contains(errs[0].Error(), "service a/b: annotation networking.istio.io/exportTo") {
		t.Errorf("exportTo errors: %v", errs)
	}
}

func TestMeshConfigWatch(t *testing.T) {
	old := meshConfigPoll
	meshConfigPoll = 10 * time.Millisecond
	defer func() { meshConfigPoll = old }()
	file := t.TempDir() + "/mesh"
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rootNamespace: a")
	_, data, err := readMeshConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	changed, bad := make(chan meshDefaults, 10), make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	defer func() { cancel(); <-watching }() // before meshConfigPoll is restored: the watch reads it
	go func() {
		defer close(watching)
		watchMeshConfig(ctx, file, data, func(d meshDefaults) { changed <- d }, func(err error) { bad <- err })
	}()
	write("rootNamespace: [x]")
	select {
	case err := <-bad:
		if !strings.Contains(err.Error(), "rootNamespace") || !strings.Contains(err.Error(), "keeping the last good one") {
			t.Errorf("bad content: %v", err)
		}
	case d := <-changed:
		t.Fatalf("bad content taken: %+v", d)
	case <-time.After(5 * time.Second):
		t.Fatal("bad content not reported")
	}
	write("rootNamespace: b")
	select {
	case d := <-changed:
		if d.rootNamespace() != "b" {
			t.Errorf("read %+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("change not read")
	}
}

func TestDebugVisibility(t *testing.T) {
	s := &Source{cfg: &Config{Sidecars: true}, meta: map[string]objectMeta{}}
	s.vis = visWith(t, "", sidecarOf("front", "default", 0, false, []string{"./*"}))
	web := svcWith("shop", "web", ".")
	s.meta["s/shop/web"] = serviceMeta(kept(web))
	s.set("s/shop/web", []table.Entry{{Host: "web.shop.svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Registry: table.RegistryKubernetes}})
	ask := func(q string) VisibilityExplanation {
		rec := httptest.NewRecorder()
		s.explainVisibility(rec, httptest.NewRequest("GET", "/visibility?"+q, nil))
		var ex VisibilityExplanation
		if err := json.Unmarshal(rec.Body.Bytes(), &ex); err != nil {
			t.Fatalf("%s: %v: %s", q, err, rec.Body.String())
		}
		return ex
	}
	ex := ask("host=web.shop.svc.cluster.local&namespace=front")
	if ex.Visible || len(ex.Objects) != 1 || !strings.Contains(ex.Objects[0].Why, "not exported to front") ||
		ex.Objects[0].ExportToFrom != "annotation "+exportToAnnotation || ex.Sidecar == nil || ex.Sidecar.Name != "front/default" {
		t.Errorf("front: %+v", ex)
	}
	ex = ask("host=web.shop.svc.cluster.local&namespace=shop")
	if !ex.Visible || !slices.Equal(ex.Answer, []string{"10.0.0.1"}) || ex.Sidecar != nil {
		t.Errorf("shop: %+v", ex)
	}
	// Exported to everyone, front's Sidecar still hides it.
	s.meta["s/shop/web"] = serviceMeta(kept(svcWith("shop", "web", "")))
	ex = ask("host=web.shop.svc.cluster.local&namespace=front")
	if ex.Visible || !strings.Contains(ex.Objects[0].Why, "not imported by Sidecar front/default: no egress host matches") ||
		!strings.Contains(ex.Objects[0].ExportToFrom, "defaultServiceExportTo") {
		t.Errorf("front with the default exportTo: %+v", ex)
	}
	rec := httptest.NewRecorder()
	s.explainVisibility(rec, httptest.NewRequest("GET", "/visibility?host=web.shop.svc.cluster.local&namespace=Bad_NS", nil))
	if rec.Code != 400 {
		t.Errorf("bad namespace: %d", rec.Code)
	}
}

// TestSnapshotVariants checks the entries the source publishes for a host named in two namespaces.
func TestSnapshotVariants(t *testing.T) {
	s := &Source{cfg: &Config{}, meta: map[string]objectMeta{}}
	for _, ns := range []string{"a", "b"} {
		se := &serviceEntry{Hosts: []string{"api.example.com"}, Addresses: []string{"240.0.0." + map[string]string{"a": "1", "b": "2"}[ns]}}
		se.Namespace, se.Name = ns, "api"
		se.CreationTimestamp.Time = t0.Add(map[string]time.Duration{"a": 1, "b": 2}[ns] * time.Minute)
		entries, _ := serviceEntryEntries(se, "")
		s.meta["e/"+ns+"/api"] = serviceEntryMeta(se)
		s.set("e/"+ns+"/api", entries)
	}
	got := s.snapshot()
	if len(got) != 2 || seen(t, got, "b") != "240.0.0.2" || seen(t, got, "z") != "240.0.0.1" || !slices.Equal(got[0].HiddenFrom, []string{"b"}) {
		t.Errorf("snapshot: %+v", got)
	}
}

// BenchmarkResolveManySidecars decides one host for 200 namespaces with a Sidecar each (the work of
// every host on a Sidecar change): about 50 µs here.
func BenchmarkResolveManySidecars(b *testing.B) {
	var scs []*sidecar
	for i := 0; i < 200; i++ {
		scs = append(scs, sidecarOf(fmt.Sprintf("ns%d", i), "default", 0, false, []string{"./*", "istio-system/*", "shop/*"}))
	}
	own, _ := namespaceSidecars(scs)
	v := newVisibility(meshDefaults{}, own)
	c := []candidate{svcCand("shop", "web", "", 0, "10.0.0.1")}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		v.resolve(c)
	}
}
