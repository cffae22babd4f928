package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// gatewayListener is an east-west gateway's port that the test opens and closes.
type gatewayListener struct {
	addr string
	mu   sync.Mutex
	l    net.Listener
}

func (g *gatewayListener) open(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	l, err := net.Listen("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	g.l = l
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (g *gatewayListener) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.l != nil {
		g.l.Close()
		g.l = nil
	}
}

// TestMulticluster runs the binary in cluster east, with west (a remote in the Corefile, same region)
// and central (from an Istio remote secret created while it runs, another region) as real kube-apiservers, each exporting
// shop/web with its own east-west gateway (a LoadBalancer Service whose ingress address is a loopback
// listener the test controls). It checks the choice by locality, the cluster-qualified names, and
// measures the time from a gateway's listener closed, and from west's API server stopped, until its
// address leaves the answers, and until it returns after the hold-down.
func TestMulticluster(t *testing.T) {
	east := realstack.Start(t, realstack.Options{WithoutIstiod: true})
	west := realstack.Start(t, realstack.Options{WithoutIstiod: true})
	central := realstack.Start(t, realstack.Options{WithoutIstiod: true})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const (
		eastIP    = "10.96.0.50"
		westGW    = "127.0.0.11"
		centralGW = "127.0.0.12"
	)
	gwPort := freePort(t)
	var p int
	fmt.Sscan(gwPort, &p)
	westL, centralL := &gatewayListener{addr: westGW + ":" + gwPort}, &gatewayListener{addr: centralGW + ":" + gwPort}
	westL.open(t)
	centralL.open(t)
	t.Cleanup(westL.close)
	t.Cleanup(centralL.close)

	// Each cluster exports shop/web; east's endpoints are not ready yet.
	must2(t)(east.CreateService("shop", "web", eastIP))
	must(east.SetEndpoints("shop", "web", realstack.Endpoint{IP: "10.1.0.5", NotReady: true}))
	must(east.CreateServiceExport("shop", "web"))
	for _, c := range []struct {
		s         *realstack.Stack
		ip, gw    string
		clusterIP string
	}{{west, "10.2.0.5", westGW, "10.96.0.60"}, {central, "10.3.0.5", centralGW, "10.96.0.70"}} {
		must2(t)(c.s.CreateService("shop", "web", c.clusterIP))
		must(c.s.SetEndpoints("shop", "web", realstack.Endpoint{IP: c.ip}))
		must(c.s.CreateServiceExport("shop", "web"))
		must(c.s.CreateGatewayService("istio-system", "istio-eastwestgateway", int32(p), c.gw))
	}
	// Another service only central exports, by label.
	must2(t)(central.CreateService("shop", "cart", "10.96.0.71"))
	must(central.SetEndpoints("shop", "cart", realstack.Endpoint{IP: "10.3.0.6"}))

	dir := t.TempDir()
	port, mport, dport := freePort(t), freePort(t), freePort(t)
	addr := "127.0.0.1:" + port
	const holdDown, lease = 3 * time.Second, 4 * time.Second
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        kubernetes {
            kubeconfig %s
            cluster east
            locality eu/eu-1
            remote west %s locality eu/eu-2
            remote_secrets
            mesh_suffixes global mesh
            export_label meshdns.io/export=true
            gateway_port %s
            probe_interval 250ms
            hold_down %v
            lease %v
            debug 127.0.0.1:%s
        }
        fallthrough
    }
    forward . %s
    prometheus 127.0.0.1:%s
}
`, port, east.Kubeconfig, west.Kubeconfig, gwPort, holdDown, lease, dport, startUpstream(t).addr, mport)
	srv := startCoreDNS(t, dir, corefile, addr)
	e := &meshEnv{metrics: "127.0.0.1:" + mport}
	// Central joins through an Istio remote secret, created while the resolver runs.
	centralKubeconfig, err := os.ReadFile(central.Kubeconfig)
	must(err)
	must(east.CreateRemoteSecret("istio-system", "istio-remote-secret-central", map[string][]byte{"central": centralKubeconfig},
		map[string]string{"topology.kubernetes.io/region": "us", "topology.kubernetes.io/zone": "us-1"}))

	answer := func(name string) string {
		t.Helper()
		r := exchange(t, "udp", addr, name, dns.TypeA, 0)
		var out []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				out = append(out, a.A.String())
			}
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	// waitAnswer polls every 50 ms until name answers want, and returns how long that took.
	waitAnswer := func(name, want string, timeout time.Duration) time.Duration {
		t.Helper()
		begin := time.Now()
		for {
			got := answer(name)
			if got == want {
				return time.Since(begin)
			}
			if time.Since(begin) > timeout {
				t.Fatalf("%s answers %q, want %q after %v", name, got, want, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// East has no ready endpoint: west, in the same region, beats central.
	waitAnswer("web.shop.global.", westGW, 10*time.Second)
	waitAnswer("web.shop.mesh.", westGW, time.Second)
	// Cluster-qualified names answer though their cluster is not preferred.
	waitAnswer("web.shop.central.global.", centralGW, 10*time.Second)
	waitAnswer("web.shop.west.global.", westGW, time.Second)
	waitAnswer("web.shop.east.global.", eastIP, time.Second)
	// cart: not exported (no ServiceExport, no export label): not a mesh name, until central labels it.
	if got := answer("cart.shop.global."); got != "192.0.2.53" {
		t.Errorf("cart.shop.global: %q, want the upstream's answer", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = central.Kube.CoreV1().Services("shop").Patch(ctx, "cart", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"meshdns.io/export":"true"}}}`), metav1.PatchOptions{})
	cancel()
	must(err)
	waitAnswer("cart.shop.global.", centralGW, 10*time.Second)

	// East's endpoint becomes ready: the local cluster first.
	must(east.SetEndpoints("shop", "web", realstack.Endpoint{IP: "10.1.0.5"}))
	waitAnswer("web.shop.global.", eastIP, 10*time.Second)
	must(east.SetEndpoints("shop", "web", realstack.Endpoint{IP: "10.1.0.5", NotReady: true}))
	waitAnswer("web.shop.global.", westGW, 10*time.Second)

	// The debug endpoint explains the choice.
	resp, err := http.Get("http://127.0.0.1:" + dport + "/multicluster?name=web.shop.global&client=127.0.0.1")
	must(err)
	var ex struct {
		Answer   []string `json:"answer"`
		Clusters []struct {
			Cluster, Tier, Why string
			Chosen             bool
		} `json:"clusters"`
	}
	must(json.NewDecoder(resp.Body).Decode(&ex))
	resp.Body.Close()
	t.Logf("debug: %+v", ex)
	if len(ex.Clusters) != 3 || !slices.Equal(ex.Answer, []string{westGW}) {
		t.Errorf("debug endpoint: %+v", ex)
	}
	for _, c := range ex.Clusters {
		want := map[string]string{"east": "not a candidate", "west": "same region", "central": "another region"}[c.Cluster]
		if c.Tier != want || c.Chosen != (c.Cluster == "west") || c.Why == "" {
			t.Errorf("debug endpoint, cluster %s: %+v, want tier %q", c.Cluster, c, want)
		}
	}

	// A cluster-qualified name: the cluster's own answer, though it is not preferred.
	resp, err = http.Get("http://127.0.0.1:" + dport + "/multicluster?name=web.shop.central.global")
	must(err)
	must(json.NewDecoder(resp.Body).Decode(&ex))
	resp.Body.Close()
	if !slices.Equal(ex.Answer, []string{centralGW}) {
		t.Errorf("debug endpoint, web.shop.central.global: %+v", ex)
	}
	if resp, err := http.Get("http://127.0.0.1:" + dport + "/multicluster?name=web.shop.svc.cluster.local"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("debug endpoint, not a mesh name: %v %v", resp, err)
	}

	var report strings.Builder
	// West's gateway stops listening: central takes over; west returns after the hold-down.
	westL.close()
	gone := waitAnswer("web.shop.global.", centralGW, 10*time.Second)
	if got := answer("web.shop.west.global."); got != "" && got != "192.0.2.53" {
		t.Errorf("withdrawn west still answers its qualified name: %q", got)
	}
	westL.open(t)
	back := waitAnswer("web.shop.global.", westGW, 10*time.Second+holdDown)
	fmt.Fprintf(&report, "gateway listener closed: withdrawn after %v; reopened: back after %v (hold-down %v, probe every 250ms)\n",
		gone.Round(time.Millisecond), back.Round(time.Millisecond), holdDown)
	if back < holdDown {
		t.Errorf("west returned after %v, before the hold-down of %v", back, holdDown)
	}

	// West's API server stops: withdrawn once the lease has passed; back after the hold-down.
	west.StopAPIServer()
	gone = waitAnswer("web.shop.global.", centralGW, 10*time.Second+lease)
	must(west.StartAPIServer())
	back = waitAnswer("web.shop.global.", westGW, 30*time.Second+holdDown)
	fmt.Fprintf(&report, "API server stopped: withdrawn after %v (lease %v); restarted: back %v after it was ready again (hold-down %v, running from its first answer)\n",
		gone.Round(time.Millisecond), lease, back.Round(time.Millisecond), holdDown)
	if gone < lease-time.Second {
		t.Errorf("west withdrawn after %v, before its lease of %v", gone, lease)
	}
	t.Log("\n" + report.String())
	recordResult(t, "multicluster", report.String())
	for _, reason := range []string{"gateway", "api"} {
		if n := e.metric(t, `coredns_meshdns_multicluster_withdrawals_total{cluster="west",reason="`+reason+`"}`); n < 1 {
			t.Errorf("withdrawals of west for %s: %v", reason, n)
		}
	}

	// A reload (SIGUSR1): the new instance takes over the names, the debug endpoint and the gauges,
	// which the old one's stopping must not reset.
	srv.reload(t)
	time.Sleep(time.Second) // the old instance stops after the new one started
	waitAnswer("web.shop.global.", westGW, 10*time.Second)
	eventually(t, 10*time.Second, "gauges after the reload", func() error {
		for name, want := range map[string]float64{
			`coredns_meshdns_multicluster_cluster_available{cluster="west"}`:    1,
			`coredns_meshdns_multicluster_cluster_available{cluster="central"}`: 1,
			`coredns_meshdns_kubernetes_connected{cluster="east"}`:              1,
		} {
			if got := e.metric(t, name); got != want {
				return fmt.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		resp, err := http.Get("http://127.0.0.1:" + dport + "/multicluster?name=web.shop.global")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("debug endpoint: %s", resp.Status)
		}
		return nil
	})

	// The remote secret removed: central is dropped without a restart.
	must(east.DeleteSecret("istio-system", "istio-remote-secret-central"))
	waitAnswer("web.shop.central.global.", "192.0.2.53", 10*time.Second)

	// Stable virtual IPs: a second resolver on the same clusters answers from the VIP ranges, and
	// the same addresses after a restart.
	vipDir := t.TempDir()
	vport := freePort(t)
	vaddr := "127.0.0.1:" + vport
	vipCorefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        kubernetes {
            kubeconfig %s
            cluster east
            remote west %s
            mesh_suffixes global
            gateway_port %s
            vips
            vip_state %s
        }
    }
}
`, vport, east.Kubeconfig, west.Kubeconfig, gwPort, filepath.Join(vipDir, "vips.json"))
	vips := func() []string {
		var out []string
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			for _, a := range addrsOf(t, vaddr, "web.shop.global.", qt) {
				out = append(out, a)
			}
		}
		return out
	}
	s := startCoreDNS(t, t.TempDir(), vipCorefile, vaddr)
	var first []string
	eventually(t, 10*time.Second, "VIPs answered", func() error {
		if first = vips(); len(first) != 2 {
			return fmt.Errorf("web.shop.global: %v", first)
		}
		return nil
	})
	v4, v6 := netip.MustParseAddr(first[0]), netip.MustParseAddr(first[1])
	if !netip.MustParsePrefix("240.240.0.0/16").Contains(v4) || !netip.MustParsePrefix("2001:2::/48").Contains(v6) {
		t.Errorf("VIPs %v outside the default ranges", first)
	}
	s.stop(t)
	startCoreDNS(t, t.TempDir(), vipCorefile, vaddr)
	eventually(t, 10*time.Second, "the same VIPs after a restart", func() error {
		if got := vips(); !slices.Equal(got, first) {
			return fmt.Errorf("web.shop.global: %v, had %v", got, first)
		}
		return nil
	})
}
