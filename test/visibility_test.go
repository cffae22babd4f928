package test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// answerFrom is answerOf for a question sent from src (a loopback address a pod of the test has).
func answerFrom(t *testing.T, src, addr, name string, qtype uint16) string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	if src != "" {
		c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s from %q: %v", name, dns.TypeToString[qtype], src, err)
	}
	return renderAnswer(r)
}

// TestVisibilityMatchesIstiod gives a real istiod and the kubernetes source the same Services and
// ServiceEntries, exported in every form (the mesh defaults, ".", "*", "~", namespace lists) to
// four namespaces, one with a Sidecar of its own and the others under the root namespace's. For a
// client of each namespace, the kubernetes source and the nds source per namespace (each one block
// for the whole node, each client told by its pod's address) must answer every name form as
// istiod's NDS table for a sidecar of that namespace does, followed by meshdns's nds source. A few verdicts are also asserted outright, so
// that the test cannot pass on a setup that shows everything to everyone.
func TestVisibilityMatchesIstiod(t *testing.T) {
	// The mesh's default, for Services and ServiceEntries alike (istiod has no separate default for
	// ServiceEntries): their own namespace and web. istiod reads it from a file; the kubernetes
	// source from the same file, and from the istio ConfigMap an install would have.
	const meshDefaults = "defaultServiceExportTo: [\".\", web]\n"
	stack := realstack.Start(t, realstack.Options{MeshConfig: meshDefaults})
	meshConfigMap := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: realstack.IstioNamespace},
		Data: map[string]string{"mesh": meshDefaults}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := stack.Kube.CoreV1().ConfigMaps(realstack.IstioNamespace).Create(ctx, meshConfigMap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	namespaces := []string{"web", "payments", "shop", "lone"}
	pods := map[string]string{"web": "127.0.0.71", "payments": "127.0.0.72", "shop": "127.0.0.73", "lone": "127.0.0.74"}
	services := []struct{ ns, name, ip, exportTo string }{
		{"web", "frontend", "10.96.60.1", "*"},
		{"payments", "billing", "10.96.60.2", ""}, // the mesh default
		{"payments", "ledger", "10.96.60.3", "."},
		{"shop", "cart", "10.96.60.4", "web,shop"},
		{"shop", "hidden", "10.96.60.5", "~"},
		{"lone", "solo", "10.96.60.6", "payments, lone"},
	}
	for _, ns := range namespaces {
		if err := stack.EnsureNamespace(ns); err != nil {
			t.Fatal(err)
		}
		createAmbientPod(t, stack, ns, "client", "client", pods[ns], true)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range services {
		must2(t)(stack.CreateService(s.ns, s.name, s.ip))
		if s.exportTo != "" {
			must(stack.SetServiceExportTo(s.ns, s.name, s.exportTo))
		}
	}
	for _, se := range []struct {
		ns, name, host, addr string
		exportTo             []string // nil: the mesh's default
	}{
		{"payments", "api", "api.payments.example.com", "240.0.1.1", []string{"."}},
		{"shop", "catalog", "catalog.example.com", "240.0.1.2", []string{"web", "lone"}},
		{"web", "everywhere", "everywhere.example.com", "240.0.1.3", []string{"*"}},
		{"shop", "dup", "dup.example.com", "240.0.1.4", []string{"."}}, // shop's own, for shop's clients
		{"lone", "dup", "dup.example.com", "240.0.1.5", []string{"*"}}, // and for everyone else
		{"payments", "defaulted", "defaulted.example.com", "240.0.1.6", nil},
		{"web", "wild", "*.wild.example.com", "240.0.1.7", []string{".", "payments"}},
		{"web", "nowhere", "nowhere.example.com", "240.0.1.8", []string{"~"}},
	} {
		must(stack.CreateServiceEntry(se.ns, se.name, []string{se.host}, []string{se.addr}, "STATIC"))
		if se.exportTo != nil {
			must(stack.SetServiceEntryExportTo(se.ns, se.name, se.exportTo...))
		}
	}
	// web has a Sidecar of its own; the others get the root namespace's, where "." is the client's
	// own namespace.
	must(stack.CreateSidecar("web", "default", nil, "./*", "payments/*", "shop/catalog.example.com"))
	must(stack.CreateSidecar(realstack.IstioNamespace, "default", nil, "./*", "web/*", "*/*.example.com", "istio-system/*"))

	up := startUpstream(t)
	// Every block serves the mesh names of its sources and passes the rest to one upstream.
	var corefile string
	block := func(sources string) (addr string) {
		port := freePort(t)
		corefile += fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
%s
        fallthrough
    }
    forward . %s
}
`, port, sources, up.addr)
		return "127.0.0.1:" + port
	}
	kubernetesBlock := func(meshConfig string) string {
		return block(fmt.Sprintf(`        kubernetes {
            kubeconfig %s
            serviceentries
            sidecars
            clients node-1
            mesh_config %s
        }`, stack.Kubeconfig, meshConfig))
	}
	kubeAddr := kubernetesBlock(filepath.Join(stack.Dir, "mesh.yaml"))
	cmAddr := kubernetesBlock("configmap") // the same from the mesh ConfigMap
	// The node-local form of the nds source: one subscription per namespace with pods on node-1.
	perNSAddr := block(fmt.Sprintf(`        nds %s {
            namespaces clients
        }
        kubernetes {
            kubeconfig %s
            clients_only node-1
        }`, stack.IstiodGRPC, stack.Kubeconfig))
	ndsAddr := map[string]string{}
	for i, ns := range namespaces {
		ndsAddr[ns] = block(fmt.Sprintf(`        nds %s {
            node_id sidecar~10.0.0.%d~probe.%s~%s.svc.cluster.local
        }
        namespace %s`, stack.IstiodGRPC, i+1, ns, ns, ns))
	}
	startCoreDNS(t, t.TempDir(), corefile, kubeAddr)

	var names []string
	for _, s := range services {
		host := s.name + "." + s.ns + ".svc.cluster.local."
		names = append(names, host, s.name+".", s.name+"."+s.ns+".", s.name+"."+s.ns+".svc.", host+"web.svc.cluster.local.")
	}
	names = append(names, "api.payments.example.com.", "catalog.example.com.", "everywhere.example.com.", "dup.example.com.",
		"defaulted.example.com.", "x.wild.example.com.", "nowhere.example.com.")

	// Verdicts read from Istio's documentation, asserted on both: "hidden" means the question went
	// upstream (whose answer to A is 192.0.2.53).
	verdicts := []struct{ ns, name, want string }{
		{"web", "api.payments.example.com.", "hidden"}, // exportTo "."
		{"payments", "api.payments.example.com.", "240.0.1.1"},
		{"web", "catalog.example.com.", "240.0.1.2"}, // exported to web, in web's Sidecar
		{"shop", "catalog.example.com.", "hidden"},   // not exported to its own namespace
		{"web", "nowhere.example.com.", "hidden"},    // exportTo "~"
		{"shop", "hidden.shop.svc.cluster.local.", "hidden"},
		{"web", "cart.shop.svc.cluster.local.", "hidden"}, // exported to web, not in web's Sidecar
		{"shop", "cart.shop.svc.cluster.local.", "10.96.60.4"},
		{"payments", "defaulted.example.com.", "240.0.1.6"},
		{"lone", "defaulted.example.com.", "hidden"}, // the mesh's ServiceEntry default
		{"web", "billing.payments.svc.cluster.local.", "10.96.60.2"},
		{"shop", "billing.payments.svc.cluster.local.", "hidden"}, // the mesh's default
		{"shop", "dup.example.com.", "240.0.1.4"},                 // its own namespace's ServiceEntry first
		{"lone", "dup.example.com.", "240.0.1.5"},
		{"payments", "dup.example.com.", "240.0.1.5"},
	}
	verdictOf := func(answer string) string {
		if strings.Contains(answer, "192.0.2.53") {
			return "hidden"
		}
		return answer
	}

	for _, ns := range namespaces {
		src := pods[ns]
		var diffs []string
		eventually(t, 60*time.Second, "the kubernetes source answers "+ns+"'s pod as istiod's table for "+ns, func() error {
			diffs = diffs[:0]
			for _, name := range names {
				for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
					want := answerFrom(t, "", ndsAddr[ns], name, qtype)
					for what, addr := range map[string]string{"kubernetes": kubeAddr, "kubernetes, mesh ConfigMap": cmAddr, "nds per namespace": perNSAddr} {
						if got := answerFrom(t, src, addr, name, qtype); got != want {
							diffs = append(diffs, fmt.Sprintf("%s %s:\n  istiod (nds as %s): %s\n  %s, from %s's pod: %s", name, dns.TypeToString[qtype], ns, want, what, ns, got))
						}
					}
				}
			}
			for _, v := range verdicts {
				if v.ns != ns {
					continue
				}
				for what, addr := range map[string]string{"istiod": ndsAddr[ns], "kubernetes": kubeAddr, "kubernetes, mesh ConfigMap": cmAddr, "nds per namespace": perNSAddr} {
					from := src
					if what == "istiod" {
						from = ""
					}
					got := verdictOf(answerFrom(t, from, addr, v.name, dns.TypeA))
					if v.want != "hidden" && !strings.Contains(got, v.want) || v.want == "hidden" && got != "hidden" {
						diffs = append(diffs, fmt.Sprintf("%s from %s, %s: want %s, got %s", v.name, ns, what, v.want, got))
					}
				}
			}
			if len(diffs) > 0 {
				return fmt.Errorf("%d differences:\n%s", len(diffs), strings.Join(diffs, "\n"))
			}
			return nil
		})
		var seen []string
		for _, name := range names {
			if verdictOf(answerFrom(t, src, kubeAddr, name, dns.TypeA)) != "hidden" {
				seen = append(seen, name)
			}
		}
		slices.Sort(seen)
		t.Logf("%s sees %d of %d names, as istiod's table for it: %s", ns, len(seen), len(names), strings.Join(seen, " "))
	}

	// A change to the mesh ConfigMap is followed: what gives no exportTo is exported everywhere.
	meshConfigMap.Data["mesh"] = "defaultServiceExportTo: [\"*\"]\n"
	if _, err := stack.Kube.CoreV1().ConfigMaps(realstack.IstioNamespace).Update(ctx, meshConfigMap, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "lone's pod sees defaulted.example.com once the mesh ConfigMap exports it everywhere", func() error {
		if got := answerFrom(t, pods["lone"], cmAddr, "defaulted.example.com.", dns.TypeA); !strings.Contains(got, "240.0.1.6") {
			return fmt.Errorf("%s", got)
		}
		return nil
	})
}
