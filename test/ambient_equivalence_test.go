package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
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
	intendedFor := func(name string) (string, bool) {
		label, _, _ := strings.Cut(name, ".")
		why, ok := intended[label]
		return why, ok
	}
	var names []string
	for _, svc := range []string{"reviews.default", "frontend.default", "cart.shop", "db.default", "empty.shop", "ext.default", "db-0.db.default", "db-1.db.default", "db-2.db.default"} {
		short, ns, _ := strings.Cut(svc, ".")
		if i := strings.LastIndex(svc, "."); i > 0 {
			short, ns = svc[:i], svc[i+1:]
		}
		host := svc + ".svc.cluster.local."
		names = append(names, host, short+".", short+"."+ns+".", short+"."+ns+".svc.", host+"default.svc.cluster.local.", short+"."+ns+".svc.cluster.local.")
	}
	names = append(names, "api.payments.example.com.", "pay.example.com.", "x.wild.example.com.", "a.b.wild.example.com.",
		"wild.example.com.", "net.example.com.", "auto.example.org.", "api.payments.example.com.svc.cluster.local.",
		"12.10.96.10.in-addr.arpa.", "7.0.0.240.in-addr.arpa.", "nothing.default.svc.cluster.local.")
	slices.Sort(names)
	names = slices.Compact(names)

	var diffs []string
	eventually(t, 20*time.Second, "the same answers from istiod's workload discovery and from the kubernetes source", func() error {
		diffs = diffs[:0]
		for _, name := range names {
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR} {
				if qtype == dns.TypePTR && !strings.HasSuffix(name, ".arpa.") || qtype != dns.TypePTR && strings.HasSuffix(name, ".arpa.") {
					continue
				}
				amb, kube := answerOf(t, ambAddr, name, qtype), answerOf(t, kubeAddr, name, qtype)
				if _, ok := intendedFor(name); amb == kube || ok {
					continue
				}
				diffs = append(diffs, fmt.Sprintf("%s %s:\n  ambient: %s\n  kubernetes: %s", name, dns.TypeToString[qtype], amb, kube))
			}
		}
		if len(diffs) > 0 {
			return fmt.Errorf("%d differences:\n%s", len(diffs), strings.Join(diffs, "\n"))
		}
		return nil
	})
	t.Logf("%d names: the same answers from both, but for the intended differences %v", len(names), intended)
	// The intended differences are real ones.
	for _, name := range []string{"api.payments.example.com.", "ext.default.svc.cluster.local."} {
		amb, kube := answerOf(t, ambAddr, name, dns.TypeA), answerOf(t, kubeAddr, name, dns.TypeA)
		t.Logf("%s A: ambient %q, kubernetes %q", name, amb, kube)
		if amb == kube {
			t.Errorf("%s: listed as an intended difference, yet the same from both", name)
		}
	}
}
