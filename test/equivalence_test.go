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

// answerOf renders a reply as its rcode and sorted answer records, for comparing two resolvers.
func answerOf(t *testing.T, addr, name string, qtype uint16) string {
	t.Helper()
	return renderAnswer(exchange(t, "tcp", addr, name, qtype, 0)) // TCP: the whole answer, whatever its size
}

// renderAnswer is a reply as its rcode and sorted answer records.
func renderAnswer(r *dns.Msg) string {
	var rrs []string
	for _, rr := range r.Answer {
		rrs = append(rrs, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	slices.Sort(rrs)
	return dns.RcodeToString[r.Rcode] + " " + strings.Join(rrs, "; ")
}

// TestKubernetesSourceMatchesIstiod gives the same objects to a real istiod, followed over NDS, and to
// the kubernetes source, and asks both for every name form of every object: the answers must be the
// same, but for the differences listed in intended. Names neither knows go to the same upstream.
func TestKubernetesSourceMatchesIstiod(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{IstiodEnv: []string{"ISTIO_DUAL_STACK=true"}})
	createEquivalenceObjects(t, stack)

	ndsAddr, kubeAddr := startEquivalencePair(t, stack, `nds `+stack.IstiodGRPC+` {
            node_id sidecar~10.0.0.1~client.default~default.svc.cluster.local
            metadata INSTANCE_IPS 10.0.0.1,fd00::1
        }`)

	// Intended differences, each with the reason, by the first label of the name in every form.
	intended := map[string]string{
		// istiod leaves ExternalName Services out of its name table; Kubernetes DNS (and we) answer a
		// CNAME to the external name, and resolve it.
		"ext": "an ExternalName Service is a CNAME",
		// istiod leaves a headless Service without ready endpoints out; it is still a name that
		// exists, so we answer NODATA rather than NXDOMAIN (and never forward it).
		"empty": "a headless Service without endpoints is NODATA",
	}
	sameAnswers(t, 30*time.Second, "istiod", ndsAddr, kubeAddr, intended, "ext.default.svc.cluster.local.", "empty.shop.svc.cluster.local.")
	for _, netw := range []string{"udp", "tcp"} {
		r := exchange(t, netw, kubeAddr, "ext.default.svc.cluster.local.", dns.TypeA, 0)
		if len(r.Answer) != 2 || r.Answer[1].Header().Rrtype != dns.TypeA {
			t.Errorf("ExternalName over %s: want the CNAME and the A record forward found, got %v", netw, r.Answer)
		}
	}
}

// startEquivalencePair starts the binary with two blocks, both in namespace default and forwarding
// what they lack to one upstream: one fed by source (its Corefile lines), one by the kubernetes
// source on the same API server. It returns their addresses.
func startEquivalencePair(t *testing.T, stack *realstack.Stack, source string) (meshAddr, kubeAddr string) {
	t.Helper()
	up := startUpstream(t)
	meshPort, kubePort := freePort(t), freePort(t)
	meshAddr, kubeAddr = "127.0.0.1:"+meshPort, "127.0.0.1:"+kubePort
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        %s
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
`, meshPort, source, up.addr, kubePort, stack.Kubeconfig, up.addr)
	startCoreDNS(t, t.TempDir(), corefile, meshAddr)
	return meshAddr, kubeAddr
}

// createEquivalenceObjects creates the objects the equivalence tests give to both sides: Services of
// every kind (dual stack, headless with ready, unready and unnamed endpoints, headless without any,
// ExternalName) and ServiceEntries (two hosts, a host in two, a wildcard, one shadowing a Service, a
// CIDR, one with an allocated address).
func createEquivalenceObjects(t *testing.T, stack *realstack.Stack) {
	t.Helper()
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
}

// equivalenceNames are the names the equivalence tests ask: every name form of their Services
// (search-suffixed too), the ServiceEntry hosts and wildcards, two PTRs and a name of nothing.
func equivalenceNames() []string {
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
	return slices.Compact(names)
}

// sameAnswers asks the mesh source's server (what names it) and the kubernetes source's every
// equivalence name, A and AAAA (PTR for reverse names), until they answer alike but for the names
// whose first label intended lists with the reason; then checks that each of real, an intended
// difference, does differ.
func sameAnswers(t *testing.T, timeout time.Duration, what, meshAddr, kubeAddr string, intended map[string]string, real ...string) {
	t.Helper()
	names := equivalenceNames()
	var diffs []string
	eventually(t, timeout, "the same answers from "+what+" and from the kubernetes source", func() error {
		diffs = diffs[:0]
		for _, name := range names {
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR} {
				if qtype == dns.TypePTR && !strings.HasSuffix(name, ".arpa.") || qtype != dns.TypePTR && strings.HasSuffix(name, ".arpa.") {
					continue
				}
				mesh, kube := answerOf(t, meshAddr, name, qtype), answerOf(t, kubeAddr, name, qtype)
				label, _, _ := strings.Cut(name, ".")
				if _, ok := intended[label]; mesh == kube || ok {
					continue
				}
				diffs = append(diffs, fmt.Sprintf("%s %s:\n  %s: %s\n  kubernetes: %s", name, dns.TypeToString[qtype], what, mesh, kube))
			}
		}
		if len(diffs) > 0 {
			return fmt.Errorf("%d differences:\n%s", len(diffs), strings.Join(diffs, "\n"))
		}
		return nil
	})
	t.Logf("%d names: the same answers from both, but for the intended differences %v", len(names), intended)
	for _, name := range real {
		mesh, kube := answerOf(t, meshAddr, name, dns.TypeA), answerOf(t, kubeAddr, name, dns.TypeA)
		t.Logf("%s A: %s %q, kubernetes %q", name, what, mesh, kube)
		if mesh == kube {
			t.Errorf("%s: listed as an intended difference, yet the same from both", name)
		}
	}
}
