package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
)

// addrsOf asks addr for name and returns the sorted addresses of type qtype in the answer.
func addrsOf(t testing.TB, addr, name string, qtype uint16) []string {
	t.Helper()
	r := exchange(t, "udp", addr, name, qtype, 4096)
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				out = append(out, v.A.String())
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				out = append(out, v.AAAA.String())
			}
		}
	}
	slices.Sort(out)
	return out
}

// resolvesTo waits until addr answers name with exactly want.
func resolvesTo(t *testing.T, addr, name string, qtype uint16, want ...string) {
	t.Helper()
	resolvesWithin(t, 15*time.Second, addr, name, qtype, want...)
}

// resolvesWithin is resolvesTo waiting up to within.
func resolvesWithin(t *testing.T, within time.Duration, addr, name string, qtype uint16, want ...string) {
	t.Helper()
	slices.Sort(want)
	start := time.Now()
	defer func() {
		t.Logf("%s %s answered as wanted after %s", name, dns.TypeToString[qtype], time.Since(start).Round(time.Millisecond))
	}()
	eventually(t, within, fmt.Sprintf("%s %s -> %v", name, dns.TypeToString[qtype], want), func() error {
		if got := addrsOf(t, addr, name, qtype); !slices.Equal(got, want) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}

// istiodCredentials returns istiod's root certificate file and a file in dir holding a token of
// service account default/default, for the TLS port.
func istiodCredentials(t *testing.T, stack *realstack.Stack, dir string) (rootCert, tokenFile string) {
	t.Helper()
	rootCert, err := stack.IstiodRootCert()
	if err != nil {
		t.Fatal(err)
	}
	token, err := stack.IstioToken("default", "default")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(dir, "istio-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return rootCert, tokenFile
}

// TestRealIstiod runs the binary against a real istiod (with its real kube-apiserver and etcd) and
// checks that Kubernetes and Istio objects become answers within seconds, stop being answers when
// deleted, survive istiod's death, and arrive over TLS with a Kubernetes token as well.
func TestRealIstiod(t *testing.T) {
	// A dual-stack istiod sends both families of a dual-stack Service to nodes that have both.
	stack := realstack.Start(t, realstack.Options{IstiodEnv: []string{"ISTIO_DUAL_STACK=true"}})
	up := startUpstream(t)
	const forwarded = "192.0.2.53" // what the upstream answers for names meshdns passes on

	dir := t.TempDir()
	rootCert, tokenFile := istiodCredentials(t, stack, dir)
	port, tlsPort, deltaPort, dualPort, mport := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	addr, tlsAddr, deltaAddr, dualAddr := "127.0.0.1:"+port, "127.0.0.1:"+tlsPort, "127.0.0.1:"+deltaPort, "127.0.0.1:"+dualPort
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s
        namespace default
        fallthrough
    }
    forward . %s
    prometheus 127.0.0.1:%s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s {
            tls %s %s
            token %s
        }
        namespace default
        fallthrough
    }
    forward . %s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s {
            delta
        }
        namespace default
        fallthrough
    }
    forward . %s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s {
            node_id sidecar~10.0.0.1~dual.default~default.svc.cluster.local
            metadata INSTANCE_IPS 10.0.0.1,fd00::1
        }
        namespace default
        fallthrough
    }
    forward . %s
}
`, port, stack.IstiodGRPC, up.addr, mport, tlsPort, stack.IstiodSecureGRPC, rootCert, realstack.IstiodServerName, tokenFile, up.addr,
		deltaPort, stack.IstiodGRPC, up.addr, dualPort, stack.IstiodGRPC, up.addr)
	startCoreDNS(t, dir, corefile, addr)
	e := &meshEnv{metrics: "127.0.0.1:" + mport}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// A Service, by every name a pod in its namespace uses.
	must2(t)(stack.CreateService("default", "reviews", "10.96.10.12"))
	for _, name := range []string{"reviews.default.svc.cluster.local.", "reviews.", "reviews.default.", "reviews.default.svc.cluster.local.default.svc.cluster.local."} {
		resolvesTo(t, addr, name, dns.TypeA, "10.96.10.12")
	}
	if r := exchange(t, "udp", addr, "reviews.default.svc.cluster.local.", dns.TypeAAAA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("AAAA of an IPv4 Service: want NODATA with an SOA, got %v", r)
	}
	// Over TLS on the secure port, with the token; and over incremental (delta) ADS.
	resolvesTo(t, tlsAddr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	resolvesTo(t, deltaAddr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")

	// A dual-stack Service, to a node with both families.
	must2(t)(stack.CreateService("default", "frontend", "10.96.30.1", "fd00:10:96::301"))
	resolvesTo(t, dualAddr, "frontend.default.svc.cluster.local.", dns.TypeA, "10.96.30.1")
	resolvesTo(t, dualAddr, "frontend.default.svc.cluster.local.", dns.TypeAAAA, "fd00:10:96::301")

	// A Service in another namespace: its short forms, but not the bare name.
	must2(t)(stack.CreateService("shop", "cart", "10.96.20.1"))
	resolvesTo(t, addr, "cart.shop.svc.cluster.local.", dns.TypeA, "10.96.20.1")
	resolvesTo(t, addr, "cart.shop.", dns.TypeA, "10.96.20.1")
	resolvesTo(t, addr, "cart.", dns.TypeA, forwarded)

	// A headless Service: ready endpoints only, and per-pod names.
	must2(t)(stack.CreateHeadlessService("default", "db",
		realstack.Endpoint{IP: "10.244.0.11", Hostname: "db-0"},
		realstack.Endpoint{IP: "10.244.0.12", Hostname: "db-1"},
		realstack.Endpoint{IP: "10.244.0.13", Hostname: "db-2", NotReady: true}))
	resolvesTo(t, addr, "db.default.svc.cluster.local.", dns.TypeA, "10.244.0.11", "10.244.0.12")
	resolvesTo(t, addr, "db-1.db.default.svc.cluster.local.", dns.TypeA, "10.244.0.12")

	// ServiceEntries: with an address, without one (istiod allocates it), and a wildcard host.
	must(stack.CreateServiceEntry("default", "payments", []string{"api.payments.example.com"}, []string{"240.0.0.7"}, "DNS"))
	resolvesTo(t, addr, "api.payments.example.com.", dns.TypeA, "240.0.0.7")
	must(stack.CreateServiceEntry("default", "auto", []string{"auto.example.org"}, nil, "DNS"))
	eventually(t, 15*time.Second, "an auto-allocated address", func() error {
		got := addrsOf(t, addr, "auto.example.org.", dns.TypeA)
		if len(got) != 1 || !strings.HasPrefix(got[0], "240.240.") {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	must(stack.CreateServiceEntry("default", "wild", []string{"*.wild.example.com"}, []string{"240.0.0.9"}, "NONE"))
	resolvesTo(t, addr, "anything.wild.example.com.", dns.TypeA, "240.0.0.9")

	// Deleted objects stop being answered.
	must(stack.DeleteService("shop", "cart"))
	resolvesTo(t, addr, "cart.shop.svc.cluster.local.", dns.TypeA, forwarded)
	must(stack.DeleteServiceEntry("default", "payments"))
	resolvesTo(t, addr, "api.payments.example.com.", dns.TypeA, forwarded)
	resolvesTo(t, deltaAddr, "api.payments.example.com.", dns.TypeA, forwarded)
	resolvesTo(t, deltaAddr, "db-1.db.default.svc.cluster.local.", dns.TypeA, "10.244.0.12")

	// istiod dies: the last table goes on answering and the metric says so.
	stack.StopIstiod()
	eventually(t, 15*time.Second, "disconnected in the metrics", func() error {
		if got := e.metric(t, `coredns_meshdns_nds_connected{address="`+stack.IstiodGRPC+`"}`); got != 0 {
			return fmt.Errorf("nds_connected %v", got)
		}
		return nil
	})
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	resolvesTo(t, addr, "db-0.db.default.svc.cluster.local.", dns.TypeA, "10.244.0.11")
	must2(t)(stack.CreateService("default", "ratings", "10.96.10.13")) // while istiod is down

	// istiod is back: what changed meanwhile arrives.
	must(stack.StartIstiod())
	resolvesTo(t, addr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")
	resolvesTo(t, tlsAddr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")
	resolvesTo(t, deltaAddr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")
	// Three server blocks follow the plaintext port: the gauge counts their streams.
	eventually(t, 15*time.Second, "connected in the metrics", func() error {
		if got := e.metric(t, `coredns_meshdns_nds_connected{address="`+stack.IstiodGRPC+`"}`); got != 3 {
			return fmt.Errorf("nds_connected %v after istiod came back, want the 3 streams to it", got)
		}
		return nil
	})
	if got := e.metric(t, `coredns_meshdns_nds_pushes_total{address="`+stack.IstiodGRPC+`",result="rejected"}`); got != 0 {
		t.Errorf("%v pushes from a real istiod were rejected", got)
	}
}

// must2 checks the error of a call that also returns a value.
func must2(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
