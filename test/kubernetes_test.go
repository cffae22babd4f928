package test

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
)

// askFrom sends a question to addr over UDP from the loopback address src (127.0.0.x standing in for
// a pod's address), and returns the reply.
func askFrom(t *testing.T, src, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s from %s: %v", name, src, err)
	}
	return r
}

// addrsFrom is addrsOf for a question sent from src.
func addrsFrom(t *testing.T, src, addr, name string, qtype uint16) []string {
	t.Helper()
	var out []string
	for _, rr := range askFrom(t, src, addr, name, qtype).Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// resolvesFrom waits until name, asked from src, is answered with exactly want.
func resolvesFrom(t *testing.T, src, addr, name string, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, 15*time.Second, fmt.Sprintf("%s from %s -> %v", name, src, want), func() error {
		if got := addrsFrom(t, src, addr, name, dns.TypeA); !slices.Equal(got, want) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}

// TestKubernetesSource runs the binary against a real kube-apiserver: Services of every kind and
// ServiceEntries become answers, changes and deletions follow, each client pod gets its own
// namespace's short names, and the last data stays while the API server is down.
func TestKubernetesSource(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{WithoutIstiod: true})
	up := startUpstream(t)
	const forwarded = "192.0.2.53"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Before the resolver starts: these come with the first sync.
	must2(t)(stack.CreateService("default", "reviews", "10.96.10.12"))
	const (
		inDefault   = "127.0.0.2" // a pod in default on this node
		inShop      = "127.0.0.3" // a pod in shop on this node
		hostNetwork = "127.0.0.4" // a host-network pod: its address is the node's, no namespace's
		elsewhere   = "127.0.0.5" // a pod on another node
		unknown     = "127.0.0.1"
	)
	must(stack.CreatePod("default", "client-a", "node-1", false, inDefault))
	must(stack.CreatePod("shop", "client-b", "node-1", false, inShop))
	must(stack.CreatePod("kube-system", "agent", "node-1", true, hostNetwork))
	must(stack.CreatePod("shop", "client-c", "node-2", false, elsewhere))

	dir := t.TempDir()
	port, mport := freePort(t), freePort(t)
	addr := "127.0.0.1:" + port
	e := &meshEnv{metrics: "127.0.0.1:" + mport}
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        kubernetes {
            kubeconfig %s
            serviceentries
            clients node-1
            cluster test-cluster
        }
        fallthrough
    }
    forward . %s
    prometheus %s
}
`, port, stack.Kubeconfig, up.addr, e.metrics)
	startCoreDNS(t, dir, corefile, addr)

	// The first sync is in before the server answers: startup waits for it.
	if got := addrsOf(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA); !slices.Equal(got, []string{"10.96.10.12"}) {
		t.Errorf("right after start: %v", got)
	}

	// Client views: the bare name is the asking pod's namespace's.
	resolvesFrom(t, inDefault, addr, "reviews.", "10.96.10.12")
	resolvesFrom(t, inShop, addr, "reviews.", forwarded)
	resolvesFrom(t, hostNetwork, addr, "reviews.", forwarded)
	resolvesFrom(t, elsewhere, addr, "reviews.", forwarded)
	resolvesFrom(t, unknown, addr, "reviews.", forwarded)
	must2(t)(stack.CreateService("shop", "cart", "10.96.20.1"))
	resolvesFrom(t, inShop, addr, "cart.", "10.96.20.1")
	resolvesFrom(t, inDefault, addr, "cart.", forwarded)
	resolvesFrom(t, inDefault, addr, "cart.shop.", "10.96.20.1")
	// A name with the asking pod's search domain appended, answered in one round trip.
	r := askFrom(t, inShop, addr, "reviews.default.svc.cluster.local.shop.svc.cluster.local.", dns.TypeA)
	if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || r.Answer[1].(*dns.A).A.String() != "10.96.10.12" {
		t.Errorf("search-suffixed name from a shop pod: %v", r.Answer)
	}
	if got := e.metric(t, `coredns_meshdns_kubernetes_client_addresses{cluster="test-cluster"}`); got != 2 {
		t.Errorf("client addresses %v, want the 2 pod addresses of node-1 that are not the node's", got)
	}
	// A pod's address moves to another namespace.
	must(stack.DeletePod("shop", "client-b"))
	must(stack.CreatePod("default", "client-d", "node-1", false, inShop))
	resolvesFrom(t, inShop, addr, "reviews.", "10.96.10.12")

	// Dual stack: every cluster IP.
	must2(t)(stack.CreateService("default", "frontend", "10.96.30.1", "fd00:10:96::301"))
	resolvesTo(t, addr, "frontend.default.svc.cluster.local.", dns.TypeA, "10.96.30.1")
	resolvesTo(t, addr, "frontend.default.svc.cluster.local.", dns.TypeAAAA, "fd00:10:96::301")

	// Headless: ready endpoints, per-pod names, and changes to them.
	must2(t)(stack.CreateHeadlessService("default", "db",
		realstack.Endpoint{IP: "10.244.0.11", Hostname: "db-0"},
		realstack.Endpoint{IP: "10.244.0.12", Hostname: "db-1"},
		realstack.Endpoint{IP: "10.244.0.13", Hostname: "db-2", NotReady: true},
		realstack.Endpoint{IP: "fd00:244::14", Hostname: "db-3"}))
	resolvesTo(t, addr, "db.default.svc.cluster.local.", dns.TypeA, "10.244.0.11", "10.244.0.12")
	resolvesTo(t, addr, "db.default.svc.cluster.local.", dns.TypeAAAA, "fd00:244::14")
	resolvesTo(t, addr, "db-1.db.default.svc.cluster.local.", dns.TypeA, "10.244.0.12")
	resolvesTo(t, addr, "db-2.db.default.svc.cluster.local.", dns.TypeA, forwarded) // not ready: not ours
	must(stack.SetEndpoints("default", "db",
		realstack.Endpoint{IP: "10.244.0.12", Hostname: "db-1"},
		realstack.Endpoint{IP: "10.244.0.13", Hostname: "db-2"}))
	resolvesTo(t, addr, "db.default.svc.cluster.local.", dns.TypeA, "10.244.0.12", "10.244.0.13")
	resolvesTo(t, addr, "db-2.db.default.svc.cluster.local.", dns.TypeA, "10.244.0.13")
	resolvesTo(t, addr, "db-0.db.default.svc.cluster.local.", dns.TypeA, forwarded)

	// ExternalName: a CNAME, its target resolved through the server (here, forward).
	must2(t)(stack.CreateExternalNameService("default", "ext", "api.example.com"))
	eventually(t, 15*time.Second, "ExternalName as a CNAME", func() error {
		r := exchange(t, "udp", addr, "ext.default.svc.cluster.local.", dns.TypeA, 0)
		if len(r.Answer) != 2 {
			return fmt.Errorf("got %v", r.Answer)
		}
		c, ok := r.Answer[0].(*dns.CNAME)
		if !ok || c.Target != "api.example.com." || r.Answer[1].(*dns.A).A.String() != forwarded {
			return fmt.Errorf("got %v", r.Answer)
		}
		return nil
	})

	// ServiceEntries: spec addresses, a wildcard, none (no istiod allocates one here), and one that
	// names a Service's host, which the Service wins.
	must(stack.CreateServiceEntry("default", "payments", []string{"api.payments.example.com"}, []string{"240.0.0.7"}, "DNS"))
	must(stack.CreateServiceEntry("default", "wild", []string{"*.wild.example.com"}, []string{"240.0.0.9"}, "NONE"))
	must(stack.CreateServiceEntry("default", "shadow", []string{"reviews.default.svc.cluster.local"}, []string{"240.0.0.99"}, "STATIC"))
	must(stack.CreateServiceEntry("default", "unallocated", []string{"auto.example.org"}, nil, "DNS"))
	resolvesTo(t, addr, "api.payments.example.com.", dns.TypeA, "240.0.0.7")
	resolvesTo(t, addr, "x.wild.example.com.", dns.TypeA, "240.0.0.9")
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	resolvesTo(t, addr, "auto.example.org.", dns.TypeA, forwarded)

	// Deletions.
	must(stack.DeleteService("shop", "cart"))
	must(stack.DeleteServiceEntry("default", "payments"))
	resolvesTo(t, addr, "cart.shop.svc.cluster.local.", dns.TypeA, forwarded)
	resolvesTo(t, addr, "api.payments.example.com.", dns.TypeA, forwarded)

	// The API server goes away: the last data stays, and the metric says so.
	stack.StopAPIServer()
	eventually(t, 30*time.Second, "disconnected in the metrics", func() error {
		if got := e.metric(t, `coredns_meshdns_kubernetes_connected{cluster="test-cluster"}`); got != 0 {
			return fmt.Errorf("kubernetes_connected %v", got)
		}
		return nil
	})
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	resolvesFrom(t, inDefault, addr, "reviews.", "10.96.10.12")
	must(stack.StartAPIServer())
	must2(t)(stack.CreateService("default", "ratings", "10.96.10.13"))
	resolvesTo(t, addr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")
	eventually(t, 30*time.Second, "connected in the metrics", func() error {
		if got := e.metric(t, `coredns_meshdns_kubernetes_connected{cluster="test-cluster"}`); got != 1 {
			return fmt.Errorf("kubernetes_connected %v", got)
		}
		return nil
	})
}

// TestKubernetesReloads reloads the binary (SIGUSR1) while its kubernetes source watches a real API
// server: goroutines stay flat (the informers of each old instance stop entirely), the names, with
// the changes folded in since the first table, answer through every reload, and a reload with the
// API server gone keeps them.
func TestKubernetesReloads(t *testing.T) {
	stack := realstack.Start(t, realstack.Options{WithoutIstiod: true})
	must2(t)(stack.CreateService("default", "reviews", "10.96.10.12"))
	port, pprofPort := freePort(t), freePort(t)
	addr := "127.0.0.1:" + port
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        kubernetes {
            kubeconfig %s
            serviceentries
            clients
        }
    }
    pprof 127.0.0.1:%s
}
`, port, stack.Kubeconfig, pprofPort)
	s := startCoreDNS(t, t.TempDir(), corefile, addr)
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	must2(t)(stack.CreateService("default", "ratings", "10.96.10.13")) // a change, not in the first table
	resolvesTo(t, addr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")

	reload := func() {
		t.Helper()
		s.reload(t)
		for _, name := range []string{"reviews.default.svc.cluster.local.", "ratings.default.svc.cluster.local."} {
			if got := addrsOf(t, addr, name, dns.TypeA); len(got) != 1 {
				t.Fatalf("%s right after a reload: %v", name, got)
			}
		}
	}
	reload()
	base := goroutines(t, "127.0.0.1:"+pprofPort)
	for range 10 {
		reload()
	}
	eventually(t, 10*time.Second, "goroutines flat across 10 reloads", func() error {
		if n := goroutines(t, "127.0.0.1:"+pprofPort); n > base+3 {
			return fmt.Errorf("%d goroutines, %d after the first reload", n, base)
		}
		return nil
	})
	stack.StopAPIServer()
	reload()
	resolvesTo(t, addr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")
}
