package meshdns

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/test"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/anypb"
)

func startFromCorefile(t *testing.T, corefile string) *MeshDNS {
	t.Helper()
	c := caddy.NewTestController("dns", corefile)
	c.ServerBlockKeys = []string{"."}
	m, err := parse(c)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	m.Next = test.NextHandler(dns.RcodeRefused, nil)
	m.store.start("dns://lifecycle")
	return m
}

func push(srv *ndstest.Server, version string, entries ...table.Entry) {
	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: nds.TypeURL, VersionInfo: version, Nonce: version,
		Resources: []*anypb.Any{{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable(entries)}}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNDSLifecycle: not ready and falling through before the first push, answering after it, and
// nothing left running, no stream left open, once shut down.
func TestNDSLifecycle(t *testing.T) {
	// Cleanups run last first: this check runs after the test server has stopped too.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	srv := ndstest.New(t, nil)
	m := startFromCorefile(t, "meshdns {\n nds "+srv.Addr+"\n namespace default\n fallthrough\n}")

	if m.Ready() {
		t.Error("ready before the first push")
	}
	q := (&test.Case{Qname: "reviews.", Qtype: dns.TypeA}).Msg()
	if r := serve(t, m, q); r.Rcode != dns.RcodeRefused {
		t.Errorf("before the first push: %v, want the next plugin", r)
	}
	srv.Request()
	push(srv, "1", table.Entry{Host: "reviews.default.svc.cluster.local", Registry: "Kubernetes", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.7")}})
	waitFor(t, "ready after the first push", m.Ready)
	if r := serve(t, m, q); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.0.0.7" {
		t.Errorf("after the push: %v", r)
	}
	srv.Request() // ACK

	srv.Stop() // the control plane goes away: the table stays
	time.Sleep(100 * time.Millisecond)
	if r := serve(t, m, q); len(r.Answer) != 1 || !m.Ready() {
		t.Errorf("after losing the control plane: %v, ready %v", r, m.Ready())
	}
	srv.Restart()
	srv.Request()
	m.store.stop()
	waitFor(t, "the stream closed after shutdown", func() bool { return srv.OpenStreams() == 0 })
}

// TestNDSWithoutFallthroughIsServfailBeforeSync: a resolver that cannot say a name is not in the mesh
// must not claim it does not exist.
func TestNDSWithoutFallthroughIsServfailBeforeSync(t *testing.T) {
	srv := ndstest.New(t, nil)
	m := startFromCorefile(t, "meshdns {\n nds "+srv.Addr+"\n}")
	defer m.store.stop()
	if r := serve(t, m, (&test.Case{Qname: "a.b.", Qtype: dns.TypeA}).Msg()); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("before the first push without fallthrough: %v", r)
	}
}

// TestSourcesMerge: a file and a control plane in one block; a Kubernetes Service beats a ServiceEntry
// for the same host whichever source carries it, and readiness waits for both.
func TestSourcesMerge(t *testing.T) {
	srv := ndstest.New(t, nil)
	path := filepath.Join(t.TempDir(), "t.yaml")
	data := "table:\n  shared.ns.svc.cluster.local: {ips: [240.240.0.1], registry: External}\n  fileonly.example: {ips: [240.240.0.2]}\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startFromCorefile(t, "meshdns {\n file "+path+" 0\n nds "+srv.Addr+"\n fallthrough\n}")
	defer m.store.stop()
	if m.Ready() {
		t.Error("ready before the control plane's first push")
	}
	a := func(name string) string {
		r := serve(t, m, (&test.Case{Qname: name, Qtype: dns.TypeA}).Msg())
		if len(r.Answer) == 0 {
			return r.MsgHdr.String()
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	if got := a("shared.ns.svc.cluster.local."); got != "240.240.0.1" {
		t.Errorf("from the file alone: %s", got)
	}
	srv.Request()
	push(srv, "1", table.Entry{Host: "shared.ns.svc.cluster.local", Registry: "Kubernetes", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}})
	waitFor(t, "ready", m.Ready)
	if got := a("shared.ns.svc.cluster.local."); got != "10.0.0.1" {
		t.Errorf("the Kubernetes Service should win: %s", got)
	}
	if got := a("fileonly.example."); got != "240.240.0.2" {
		t.Errorf("the file's own host: %s", got)
	}
}
