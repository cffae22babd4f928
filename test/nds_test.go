package test

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/types/known/anypb"
)

// goroutines reads the goroutine count of a running coredns from its pprof endpoint.
func goroutines(t *testing.T, pprofAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no goroutine total in %s", body[:min(len(body), 200)])
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// reloadsKeepOneStream reloads s (SIGUSR1) 21 times, each time until answered succeeds again, and
// checks that srv has one stream open after the first reload and after the last, and that the
// goroutines (pprof on pprofPort) stay flat from the first reload on. It returns the reload.
func reloadsKeepOneStream(t *testing.T, s *server, srv *ndstest.Server, pprofPort string, answered func() error) (reload func()) {
	t.Helper()
	reload = func() {
		t.Helper()
		s.reload(t)
		eventually(t, 10*time.Second, "answers after a reload", answered)
	}
	oneStream := func(when string) {
		t.Helper()
		eventually(t, 5*time.Second, "one stream "+when, func() error {
			if n := srv.OpenStreams(); n != 1 {
				return fmt.Errorf("%d streams open", n)
			}
			return nil
		})
	}
	reload() // the first reload brings up what a reload keeps (pprof's server, for one)
	oneStream("after a reload")
	base := goroutines(t, "127.0.0.1:"+pprofPort)
	for range 20 {
		reload()
	}
	oneStream("after 21 reloads")
	eventually(t, 5*time.Second, "goroutines flat across 20 reloads", func() error {
		if n := goroutines(t, "127.0.0.1:"+pprofPort); n > base+3 {
			return fmt.Errorf("%d goroutines, %d after the first reload", n, base)
		}
		return nil
	})
	return reload
}

// TestReloadsLeaveNothingBehind reloads the real binary (SIGUSR1) many times while it follows an
// in-process control plane: one stream stays open, the goroutine count stays flat, and answers go on.
// There is no forward in this Corefile: CoreDNS 1.15's forward leaks one connection-manager goroutine
// per reload (proxy.Stop leaves its transport running), which would hide ours.
func TestReloadsLeaveNothingBehind(t *testing.T) {
	srv := ndstest.New(t, nil)
	entry := table.Entry{Host: "reviews.default.svc.cluster.local", Registry: "Kubernetes", Addrs: []netip.Addr{netip.MustParseAddr("10.96.7.7")}}
	version := 0
	srv.OnOpen = func() any {
		version++
		return &discovery.DiscoveryResponse{TypeUrl: nds.TypeURL, VersionInfo: fmt.Sprint(version), Nonce: fmt.Sprint(version),
			Resources: []*anypb.Any{{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable([]table.Entry{entry})}}}
	}
	port, pprofPort := freePort(t), freePort(t)
	addr := "127.0.0.1:" + port
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    meshdns {
        nds %s
        namespace default
    }
    pprof 127.0.0.1:%s
}
`, port, srv.Addr, pprofPort)
	s := startCoreDNS(t, t.TempDir(), corefile, addr)
	answered := func() error {
		r := exchange(t, "udp", addr, "reviews.", dns.TypeA, 0)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.96.7.7" {
			return fmt.Errorf("%v", r.Answer)
		}
		return nil
	}
	eventually(t, 10*time.Second, "answer from the control plane's table", answered)

	reload := reloadsKeepOneStream(t, s, srv, pprofPort, answered)
	if version < 22 {
		t.Errorf("the control plane saw %d streams over 21 reloads", version)
	}

	// With the control plane gone, a reload keeps the table it had.
	srv.Stop()
	reload()
	if err := answered(); err != nil {
		t.Errorf("after a reload without the control plane: %v", err)
	}
}
