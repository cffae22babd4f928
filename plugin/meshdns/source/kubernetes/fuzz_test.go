package kubernetes

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParse feeds the kubernetes block any text: it parses or says why, never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"kubernetes",
		"kubernetes {\n kubeconfig /nonexistent ctx\n namespaces a b\n serviceentries\n clients node-1\n cluster c1\n startup_timeout 2s\n}",
		"kubernetes {\n clients\n}",
		"kubernetes {\n clusterset\n}",
		"kubernetes {\n clusterset mc.example\n}",
		"kubernetes {\n namespaces\n}",
		"kubernetes {",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		c := caddy.NewTestController("dns", input)
		if !c.Next() {
			return
		}
		cfg, err := Parse(c)
		if err == nil && cfg == nil {
			t.Fatal("no config and no error")
		}
	})
}

// FuzzServiceEntry reads a ServiceEntry of any shape (as JSON) into names: bad hosts and addresses are
// reported or skipped, never a panic, and every name it gives is valid.
func FuzzServiceEntry(f *testing.F) {
	f.Add(`{"metadata":{"name":"a","namespace":"b"},"spec":{"hosts":["a.example.com","*.w.example.com"],"addresses":["240.0.0.1","10.0.0.0/8"]},"status":{"addresses":[{"host":"a.example.com","value":"240.240.0.1"}]}}`)
	f.Add(`{"spec":{"hosts":[1,null,{"x":1}],"addresses":"240.0.0.1"},"status":{"addresses":["x",{"value":7}]}}`)
	f.Fuzz(func(t *testing.T, data string) {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(data)); err != nil {
			return
		}
		entries, _ := serviceEntryEntries(newServiceEntry(u), "c")
		for _, e := range entries {
			if err := table.ValidateHost(e.Host); err != nil || len(e.Addrs) == 0 {
				t.Fatalf("entry %+v: %v", e, err)
			}
		}
	})
}

// FuzzServiceImport reads a ServiceImport of any shape (as JSON), with one EndpointSlice of any shape,
// into names: every name it gives is valid, every SRV target one of its names.
func FuzzServiceImport(f *testing.F) {
	f.Add(`{"metadata":{"name":"web","namespace":"shop"},"spec":{"type":"ClusterSetIP","ips":["10.42.0.1","fd42::1"],"ports":[{"name":"http","protocol":"TCP","port":80}]}}`,
		`{"metadata":{"name":"s1","namespace":"shop","labels":{"multicluster.kubernetes.io/service-name":"web","multicluster.kubernetes.io/source-cluster":"east"}},"addressType":"IPv4","endpoints":[{"addresses":["10.1.0.1"],"hostname":"web-0"}]}`)
	f.Add(`{"metadata":{"name":"db","namespace":"shop"},"spec":{"type":"Headless","ports":[{"name":"pg","port":5432},{"port":"x"},null]}}`,
		`{"metadata":{"name":"s1","labels":{"multicluster.kubernetes.io/source-cluster":"Not A Label"}},"addressType":"IPv6","endpoints":[{"addresses":["fd00::1","x"],"hostname":"-bad-"},{"addresses":[]}]}`)
	f.Fuzz(func(t *testing.T, imp, slice string) {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(imp)); err != nil {
			return
		}
		var es discoveryv1.EndpointSlice
		if err := json.Unmarshal([]byte(slice), &es); err != nil {
			return
		}
		entries, _ := serviceImportEntries(newServiceImport(u), keptSlices([]*discoveryv1.EndpointSlice{&es}), DefaultClustersetZone, "local")
		hosts := map[string]bool{}
		for _, e := range entries {
			if err := table.ValidateHost(e.Host); err != nil {
				t.Fatalf("entry %+v: %v", e, err)
			}
			if len(e.Addrs) == 0 && len(e.SRV) == 0 {
				t.Fatalf("entry %+v answers nothing", e)
			}
			hosts[e.Host] = true
		}
		for _, e := range entries {
			for _, r := range e.SRV {
				if !hosts[r.Target] {
					t.Fatalf("SRV %s -> %s: not a name of the import", e.Host, r.Target)
				}
			}
		}
	})
}

// FuzzVisibility reads exportTo values (a Service's annotation, a ServiceEntry's list), Sidecar egress
// hosts and a mesh config of any text: parsing reports or succeeds, never panics, and the entries
// published give every namespace exactly what istiod's choice for it gives, in one variant.
func FuzzVisibility(f *testing.F) {
	f.Add(".,front", "~", "./*\nshop/web.shop.svc.cluster.local\n~ext/*", "defaultServiceExportTo: [.]\nrootNamespace: istio-system")
	f.Add("*", "front,shop", "*/*.svc.cluster.local\n~/*.example.com", "")
	f.Add("~", "", "bad\n/x\na/b/c\n*/*", "rootNamespace: [x]")
	f.Add("", "*", "", "defaultServiceExportTo: [front, \"~\"]")
	f.Fuzz(func(t *testing.T, annotation, seExportTo, egress, mesh string) {
		d, err := parseMeshConfig("mesh.yaml", []byte(mesh))
		if err != nil {
			d = meshDefaults{}
		}
		var hosts []string
		if egress != "" {
			hosts = strings.Split(egress, "\n")
		}
		own, _ := namespaceSidecars([]*sidecar{sidecarOf("front", "default", 0, false, hosts), sidecarOf(d.rootNamespace(), "root", 1, false, hosts)})
		v := newVisibility(d, own)
		web := svcCand("shop", "web", annotation, 2, "10.0.0.1")
		shadow := seCand("front", "shadow", "web.shop.svc.cluster.local", splitExportTo(seExportTo), 0, "240.0.0.1")
		other := seCand("ext", "shadow", "web.shop.svc.cluster.local", nil, 1, "240.0.0.2")
		cands := []candidate{shadow, other, web}
		ex := make([]exported, len(cands))
		for i, c := range cands {
			ex[i] = effectiveExportTo(c.exportTo, c.field, c.ns, &v.defaults)
		}
		entries := v.resolve(cands)
		for _, ns := range append(v.namespaces(cands, ex), "unnamed") {
			var want []string
			for _, i := range v.choose(ns, cands, ex).winners {
				want = append(want, cands[i].entries[0].Addrs[0].String())
			}
			if got := seen(t, entries, ns); got != strings.Join(want, ",") {
				t.Fatalf("namespace %q sees %q, istiod's choice is %v (entries %+v)", ns, got, want, entries)
			}
		}
	})
}

// FuzzDNS1123Label holds isDNS1123Label to Kubernetes's own validation.
func FuzzDNS1123Label(f *testing.F) {
	for _, s := range []string{"web-0", "-a", "a.b", "A", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isDNS1123Label(s), len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("isDNS1123Label(%q) = %v, validation says %v", s, got, want)
		}
	})
}
