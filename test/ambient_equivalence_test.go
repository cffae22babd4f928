package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"
)

// TestAmbientMatchesKubernetes gives the same objects to a real istiod in ambient mode, followed by
// the ambient source, and to the kubernetes source, and asks both for every name form of every
// object: the answers must be the same, but for the differences listed in intended.
func TestAmbientMatchesKubernetes(t *testing.T) {
	stack := ambientStack(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must2(t)(stack.CreateService("default", "reviews", "10.96.10.12"))
	must2(t)(stack.CreateService("default", "frontend", "10.96.30.1", "fd00:10:96::301"))
	must2(t)(stack.CreateService("shop", "cart", "10.96.20.1"))
	must2(t)(stack.CreateHeadlessService("default", "db",
		realstack.Endpoint{IP: "10.244.0.11", Hostname: "db-0"},
		realstack.Endpoint{IP: "10.244.0.12", Hostname: "db-1"},
		realstack.Endpoint{IP: "10.244.0.13", Hostname: "db-2", NotReady: true},
		realstack.Endpoint{IP: "10.244.0.14"}))
	must2(t)(stack.CreateHeadlessService("shop", "empty"))
	must2(t)(stack.CreateExternalNameService("default", "ext", "api.example.com"))
	must(stack.CreateServiceEntry("default", "payments", []string{"api.payments.example.com", "pay.example.com"}, []string{"240.0.0.7", "240.0.0.8"}, "STATIC"))
	must(stack.CreateServiceEntry("default", "payments-more", []string{"api.payments.example.com"}, []string{"240.0.0.17"}, "STATIC"))
	must(stack.CreateServiceEntry("default", "wild", []string{"*.wild.example.com"}, []string{"240.0.0.9"}, "NONE"))
	must(stack.CreateServiceEntry("default", "shadow", []string{"reviews.default.svc.cluster.local"}, []string{"240.0.0.99"}, "STATIC"))
	must(stack.CreateServiceEntry("default", "cidr", []string{"net.example.com"}, []string{"10.10.0.0/16"}, "NONE"))
	must(stack.CreateServiceEntry("default", "auto", []string{"auto.example.org"}, nil, "DNS"))

	up := startUpstream(t)
	dir := t.TempDir()
	ambPort, kubePort := freePort(t), freePort(t)
	ambAddr, kubeAddr := "127.0.0.1:"+ambPort, "127.0.0.1:"+kubePort
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s
        namespace default
        fallthrough
    }
    forward . %s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        kubernetes {
            kubeconfig %s
            serviceentries
        }
        namespace default
        fallthrough
    }
    forward . %s
}
`, ambPort, stack.IstiodGRPC, up.addr, kubePort, stack.Kubeconfig, up.addr)
	startCoreDNS(t, dir, corefile, ambAddr)

	// Intended differences, each with the reason, by the first label of the name in every form.
	intended := map[string]string{
		// istiod's ambient index keys a ServiceEntry host by namespace/hostname: two ServiceEntries of
		// one namespace naming the same host become one Address Service, with one of them's addresses;
		// the kubernetes source (and NDS) merge both.
		"api": "two ServiceEntries of a namespace with one host are one Service in workload discovery",
		"7":   "the PTR of an address of the ServiceEntry left out (above)",
		// Workload discovery leaves ExternalName Services out, as NDS does; the kubernetes source
		// answers them with a CNAME. (A headless Service without endpoints is NODATA from both:
		// workload discovery sends it, unlike NDS.)
		"ext": "an ExternalName Service is a CNAME from the kubernetes source, unknown to workload discovery",
	}
	sameAnswers(t, 20*time.Second, "ambient", ambAddr, kubeAddr, intended, "api.payments.example.com.", "ext.default.svc.cluster.local.")
}
