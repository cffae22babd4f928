package test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/realstack"

	"github.com/miekg/dns"
)

// openFiles counts the file descriptors (files, sockets, connections) a process holds.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestChaos keeps a steady load of mesh questions on the binary while its control planes, istiod
// (over NDS, and over workload discovery to an ambient block of its own) and kube-apiserver (the
// kubernetes source), are killed, restarted, slowed down and
// partitioned, each reached through a proxy the test controls, and while the Corefile is reloaded
// again and again. Every question must get the right answer throughout; readiness must stay true;
// the connected metrics must say when a control plane is gone; goroutines must stay flat across the
// reloads. `make chaos` runs the full version (a partition long enough for keepalive to notice it,
// 100 reloads); .ci/run and plain `go test` a short one.
func TestChaos(t *testing.T) {
	full := os.Getenv("MESHDNS_CHAOS") == "full"
	// Ambient on: istiod serves sidecars' NDS and ztunnels' workload discovery side by side.
	stack := realstack.Start(t, realstack.Options{IstiodEnv: []string{"PILOT_ENABLE_AMBIENT=true"}})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must2(t)(stack.CreateService("default", "reviews", "10.96.10.12"))
	must(stack.CreateServiceEntry("default", "payments", []string{"api.payments.example.com"}, []string{"240.0.0.7"}, "STATIC"))

	istiod := newFaultProxy(t, stack.IstiodGRPC)
	apiserver := newFaultProxy(t, strings.TrimPrefix(stack.APIServer, "https://"))
	admin, err := os.ReadFile(stack.Kubeconfig)
	must(err)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(os.WriteFile(kubeconfig, []byte(strings.Replace(string(admin), stack.APIServer, "https://"+apiserver.Addr, 1)), 0o600))

	port, aport, mport, rport, pport := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	addr, ambientAddr := "127.0.0.1:"+port, "127.0.0.1:"+aport
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s {
            node_id sidecar~10.0.0.1~chaos.default~default.svc.cluster.local
        }
        kubernetes {
            kubeconfig %s
            serviceentries
        }
        namespace default
    }
    prometheus 127.0.0.1:%s
    ready 127.0.0.1:%s
    pprof 127.0.0.1:%s
}
.:%s {
    bind 127.0.0.1
    meshdns {
        ambient %s
        namespace default
    }
}
`, port, istiod.Addr, kubeconfig, mport, rport, pport, aport, istiod.Addr)
	s := startCoreDNS(t, dir, corefile, addr)
	e := &meshEnv{metrics: "127.0.0.1:" + mport}
	resolvesTo(t, addr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	resolvesTo(t, addr, "api.payments.example.com.", dns.TypeA, "240.0.0.7")
	resolvesTo(t, ambientAddr, "reviews.default.svc.cluster.local.", dns.TypeA, "10.96.10.12")
	resolvesTo(t, ambientAddr, "api.payments.example.com.", dns.TypeA, "240.0.0.7")
	waitHTTP(t, "http://127.0.0.1:"+rport+"/ready", 20*time.Second)
	metricIs := func(what, name string, want float64, within time.Duration) {
		t.Helper()
		begin := time.Now()
		eventually(t, within, what, func() error {
			if got := e.metric(t, name); got != want {
				return fmt.Errorf("%s = %v", name, got)
			}
			return nil
		})
		t.Logf("%s after %v", what, time.Since(begin).Round(100*time.Millisecond))
	}
	ndsUp := `coredns_meshdns_nds_connected{address="` + istiod.Addr + `"}`
	ambientUp := `coredns_meshdns_ambient_connected{address="` + istiod.Addr + `"}`
	kubeUp := `coredns_meshdns_kubernetes_connected{cluster=""}`
	metricIs("NDS connected", ndsUp, 1, 20*time.Second)
	metricIs("ambient connected", ambientUp, 1, 20*time.Second)
	metricIs("kubernetes connected", kubeUp, 1, 20*time.Second)

	// Readiness is watched throughout.
	var notReady, unreachable atomic.Int64
	stopReady := make(chan struct{})
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		for {
			select {
			case <-stopReady:
				return
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := http.Get("http://127.0.0.1:" + rport + "/ready")
			if err != nil {
				// The ready plugin closes and reopens its listener at each reload: a refused
				// connection then is CoreDNS's, not an answer about readiness.
				unreachable.Add(1)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				// When, and what the ready plugin said was not ready: to place it in the chaos.
				t.Logf("/ready %d at %s: %s", resp.StatusCode, time.Now().Format("15:04:05.000"), strings.TrimSpace(string(body)))
				notReady.Add(1)
			}
		}
	}()

	load := startLoad(t, addr, map[string][]string{
		"reviews.default.svc.cluster.local.": {"10.96.10.12"},
		"reviews.":                           {"10.96.10.12"},
		"api.payments.example.com.":          {"240.0.0.7"},
	}, 4, 100)
	ambientLoad := startLoad(t, ambientAddr, map[string][]string{
		"reviews.default.svc.cluster.local.": {"10.96.10.12"},
		"reviews.":                           {"10.96.10.12"},
		"api.payments.example.com.":          {"240.0.0.7"},
	}, 2, 100)
	step := func(what string) { t.Logf("chaos: %s (%s)", what, time.Now().Format("15:04:05.000")) }

	step("istiod killed")
	stack.StopIstiod()
	metricIs("NDS disconnected after istiod's death", ndsUp, 0, 20*time.Second)
	metricIs("ambient disconnected after istiod's death", ambientUp, 0, 20*time.Second)
	must(stack.StartIstiod())
	metricIs("NDS back after istiod's restart", ndsUp, 1, 60*time.Second)
	metricIs("ambient back after istiod's restart", ambientUp, 1, 60*time.Second)

	step("kube-apiserver killed")
	stack.StopAPIServer()
	metricIs("kubernetes disconnected after the API server's death", kubeUp, 0, 20*time.Second)
	must(stack.StartAPIServer())
	metricIs("kubernetes back after the API server's restart", kubeUp, 1, 20*time.Second)

	step("both control planes slowed to 300 ms a chunk")
	istiod.set("slow", 300*time.Millisecond)
	apiserver.set("slow", 300*time.Millisecond)
	must2(t)(stack.CreateService("default", "ratings", "10.96.10.13"))
	resolvesTo(t, addr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")
	istiod.set("pass", 0)
	apiserver.set("pass", 0)
	// Workload discovery's pushes after the API server's return take 7 to over 15 s through the slowed
	// link here (3 s and more than 15 s after the link was back in two CI runs): the ambient block is
	// asked once the link is back, and given longer.
	resolvesWithin(t, 45*time.Second, ambientAddr, "ratings.default.svc.cluster.local.", dns.TypeA, "10.96.10.13")

	step("both control planes cut off (connections reset)")
	istiod.set("cut", 0)
	apiserver.set("cut", 0)
	metricIs("NDS disconnected by the cut", ndsUp, 0, 20*time.Second)
	metricIs("ambient disconnected by the cut", ambientUp, 0, 20*time.Second)
	metricIs("kubernetes disconnected by the cut", kubeUp, 0, 20*time.Second)
	istiod.set("pass", 0)
	apiserver.set("pass", 0)
	metricIs("NDS back after the cut", ndsUp, 1, 60*time.Second)
	metricIs("ambient back after the cut", ambientUp, 1, 60*time.Second)
	metricIs("kubernetes back after the cut", kubeUp, 1, 20*time.Second)

	partition := 5 * time.Second
	if full {
		partition = 60 * time.Second
	}
	step(fmt.Sprintf("both control planes partitioned (traffic swallowed) for %v", partition))
	istiod.set("blackhole", 0)
	apiserver.set("blackhole", 0)
	if full {
		// Keepalive (30 s, 10 s to answer) and the API server probe (5 s) notice it.
		metricIs("NDS disconnected by the partition", ndsUp, 0, 60*time.Second)
		metricIs("ambient disconnected by the partition", ambientUp, 0, 60*time.Second)
		metricIs("kubernetes disconnected by the partition", kubeUp, 0, 20*time.Second)
	}
	time.Sleep(partition)
	istiod.set("cut", 0) // the partition heals; what hung is reset, as a healed network's peers do
	apiserver.set("cut", 0)
	istiod.set("pass", 0)
	apiserver.set("pass", 0)
	metricIs("NDS back after the partition", ndsUp, 1, 60*time.Second)
	metricIs("ambient back after the partition", ambientUp, 1, 60*time.Second)
	metricIs("kubernetes back after the partition", kubeUp, 1, 20*time.Second)

	reloads := 20
	if full {
		reloads = 100
	}
	step(fmt.Sprintf("%d reloads under load", reloads))
	reload := func() {
		t.Helper()
		s.reload(t)
	}
	reload()
	time.Sleep(time.Second)
	base := goroutines(t, "127.0.0.1:"+pport)
	fds := openFiles(t, s.cmd.Process.Pid)
	for range reloads {
		reload()
	}
	eventually(t, 15*time.Second, fmt.Sprintf("open files and sockets flat across %d reloads", reloads), func() error {
		if n := openFiles(t, s.cmd.Process.Pid); n > fds+5 {
			return fmt.Errorf("%d open, %d before", n, fds)
		}
		return nil
	})
	eventually(t, 15*time.Second, fmt.Sprintf("goroutines flat across %d reloads", reloads), func() error {
		if n := goroutines(t, "127.0.0.1:"+pport); n > base+5 {
			return fmt.Errorf("%d goroutines, %d before", n, base)
		}
		return nil
	})
	metricIs("NDS connected after the reloads", ndsUp, 1, 20*time.Second)
	metricIs("ambient connected after the reloads", ambientUp, 1, 20*time.Second)
	must2(t)(stack.CreateService("default", "details", "10.96.10.14"))
	resolvesTo(t, addr, "details.default.svc.cluster.local.", dns.TypeA, "10.96.10.14")
	resolvesTo(t, ambientAddr, "details.default.svc.cluster.local.", dns.TypeA, "10.96.10.14")

	close(stopReady)
	<-readyDone
	for _, b := range []struct {
		what string
		g    *loadGen
	}{{"NDS and kubernetes", load}, {"ambient", ambientLoad}} {
		what, g := b.what, b.g
		report := g.report()
		t.Logf("load through the chaos, %s block: %s", what, report)
		if g.bad() > 0 {
			t.Errorf("%s block: questions without the right answer: %s\nfirst failures:\n%s", what, report, strings.Join(g.failures, "\n"))
		}
	}
	if n := notReady.Load(); n > 0 {
		t.Errorf("/ready said not ready %d times", n)
	}
	t.Logf("/ready unreachable %d times (its listener, reopened at each reload)", unreachable.Load())
}
