package test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// render builds a kustomize overlay of deploy/kubernetes into its objects.
func render(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "deploy", "kubernetes", "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize %s: %v", overlay, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

// apply server-side applies objects to the stack, for real or as a dry run.
func apply(t *testing.T, stack *realstack.Stack, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(stack.Kube.Discovery()))
	opts := metav1.ApplyOptions{FieldManager: "meshdns-test", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = stack.Dynamic.Resource(m.Resource)
		if o.GetNamespace() != "" {
			ri = stack.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = ri.Apply(ctx, o.GetName(), o, opts)
		cancel()
		if err != nil {
			t.Errorf("applying %s %s/%s (dry run %v): %v", gvk.Kind, o.GetNamespace(), o.GetName(), dryRun, err)
		}
	}
}

func find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

// TestDeployManifests renders every overlay of deploy/kubernetes, has the real kube-apiserver
// validate every object (server-side apply, dry run), then runs the kubernetes overlay's Corefile
// with the token of the manifests' ServiceAccount: its informers must sync with exactly the
// ClusterRole's permissions, and the ServiceAccount must be able to do nothing more.
func TestDeployManifests(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{WithoutIstiod: true})
	if err := stack.EnsureNamespace("kube-system"); err != nil {
		t.Fatal(err)
	}
	kube := render(t, "kubernetes")
	for name, objs := range map[string][]*unstructured.Unstructured{"kubernetes": kube, "nds": render(t, "nds"), "ambient": render(t, "ambient")} {
		var kinds []string
		for _, o := range objs {
			kinds = append(kinds, o.GetKind())
		}
		t.Logf("overlay %s: %v", name, kinds)
		if find(objs, "DaemonSet") == nil || find(objs, "ConfigMap") == nil {
			t.Fatalf("overlay %s lacks the DaemonSet or the ConfigMap", name)
		}
		apply(t, stack, objs, true)
	}

	// The ClusterRole is exactly list and watch of what the source watches, and the istio ConfigMap.
	var role rbacv1.ClusterRole
	roleJSON, _ := find(kube, "ClusterRole").MarshalJSON()
	if err := yaml.Unmarshal(roleJSON, &role); err != nil {
		t.Fatal(err)
	}
	names := func(n []string) string { // a rule limited to some objects: configmaps[istio]
		if len(n) == 0 {
			return ""
		}
		return fmt.Sprint(n)
	}
	var granted []string
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					granted = append(granted, fmt.Sprintf("%s/%s%s:%s", g, res, names(r.ResourceNames), v))
				}
			}
		}
	}
	slices.Sort(granted)
	want := []string{"/configmaps[istio]:get", "/configmaps[istio]:list", "/configmaps[istio]:watch", "/pods:list", "/pods:watch", "/services:list", "/services:watch", "discovery.k8s.io/endpointslices:list",
		"discovery.k8s.io/endpointslices:watch", "networking.istio.io/serviceentries:list", "networking.istio.io/serviceentries:watch",
		"networking.istio.io/sidecars:list", "networking.istio.io/sidecars:watch"}
	if !slices.Equal(granted, want) {
		t.Errorf("ClusterRole grants %v, want %v", granted, want)
	}

	// For real now: the ServiceAccount and its RBAC; then the source runs with its token.
	var rbac []*unstructured.Unstructured
	for _, o := range kube {
		if k := o.GetKind(); k == "ServiceAccount" || k == "ClusterRole" || k == "ClusterRoleBinding" {
			rbac = append(rbac, o)
		}
	}
	apply(t, stack, rbac, false)
	kubeconfig, err := stack.ServiceAccountKubeconfig("kube-system", "meshdns")
	if err != nil {
		t.Fatal(err)
	}
	must2(t)(stack.CreateService("shop", "cart", "10.96.20.1"))
	must2(t)(stack.CreateHeadlessService("shop", "db", realstack.Endpoint{IP: "10.244.1.5", Hostname: "db-0"}))
	if err := stack.CreateServiceEntry("shop", "payments", []string{"api.payments.example.com"}, []string{"240.0.0.7"}, "STATIC"); err != nil {
		t.Fatal(err)
	}

	// The overlay's Corefile as it is, but for what only a node has: the link-local address (its
	// setup is TestNodeCache's), port 53, the in-cluster configuration.
	corefile := find(kube, "ConfigMap").Object["data"].(map[string]any)["Corefile"].(string)
	port, rport, mport := freePort(t), freePort(t), freePort(t)
	up := startUpstream(t)
	for _, r := range []struct{ re, with string }{
		{`(?m)^\s*nodecache .*\n`, ""},
		{`(?m)^(\s*bind) 169\.254\.20\.10$`, "${1} 127.0.0.1"},
		{`(?m)^\.:53 \{`, ".:" + port + " {"},
		{`(?m)^(\s*kubernetes \{)$`, "${1}\n            kubeconfig " + kubeconfig},
		{`169\.254\.20\.10:8080`, "127.0.0.1:" + freePort(t)},
		{`169\.254\.20\.10:8181`, "127.0.0.1:" + rport},
		{`prometheus :9253`, "prometheus 127.0.0.1:" + mport},
		{`forward \. /etc/resolv\.conf`, "forward . " + up.addr},
	} {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(corefile) {
			t.Fatalf("the overlay's Corefile has no %s:\n%s", r.re, corefile)
		}
		corefile = re.ReplaceAllString(corefile, r.with)
	}
	t.Setenv("NODE_NAME", "node-1")
	t.Setenv("KUBE_DNS_UPSTREAM_SERVICE_HOST", "127.0.0.1")
	addr := "127.0.0.1:" + port
	startCoreDNS(t, t.TempDir(), corefile, addr)
	waitHTTP(t, "http://127.0.0.1:"+rport+"/ready", 20*time.Second)
	resolvesTo(t, addr, "cart.shop.svc.cluster.local.", dns.TypeA, "10.96.20.1")
	resolvesTo(t, addr, "db-0.db.shop.svc.cluster.local.", dns.TypeA, "10.244.1.5")
	resolvesTo(t, addr, "api.payments.example.com.", dns.TypeA, "240.0.0.7")
	e := &meshEnv{metrics: "127.0.0.1:" + mport}
	if got := e.metric(t, `coredns_meshdns_kubernetes_connected{cluster=""}`); got != 1 {
		t.Errorf("kubernetes_connected %v with the ServiceAccount's token", got)
	}

	// And nothing more than that.
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Verb: "get", Resource: "services", Namespace: "shop"},
		{Verb: "create", Resource: "services", Namespace: "shop"},
		{Verb: "list", Resource: "secrets"},
		{Verb: "list", Resource: "configmaps"},
		{Verb: "watch", Resource: "nodes"},
		{Verb: "delete", Resource: "pods", Namespace: "shop"},
		{Verb: "update", Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: "shop"},
		{Verb: "create", Group: "networking.istio.io", Resource: "serviceentries", Namespace: "shop"},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:kube-system:meshdns",
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			ResourceAttributes: &ra,
		}}
		got, err := stack.Kube.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed {
			t.Errorf("the ServiceAccount may %s %s/%s", ra.Verb, ra.Group, ra.Resource)
		}
	}
}
