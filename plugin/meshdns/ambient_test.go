package meshdns

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/test"

	"github.com/meshdns/meshdns/plugin/meshdns/source/ambient"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/anypb"
)

func addressResource(name string, b []byte) *discovery.Resource {
	return &discovery.Resource{Name: name, Version: "1", Resource: &anypb.Any{TypeUrl: ambient.TypeURL, Value: b}}
}

// TestAmbientLifecycle: not ready before the first push, answering after it with the namespace of
// the workload that asks, and nothing left running, no stream left open, once shut down.
func TestAmbientLifecycle(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	srv := ndstest.New(t, nil)
	m := startFromCorefile(t, "meshdns {\n ambient "+srv.Addr+"\n namespace default\n fallthrough\n}")
	if m.Ready() {
		t.Error("ready before the first push")
	}
	srv.Request()
	cart := &ambient.Service{Name: "cart", Namespace: "shop", Hostname: "cart.shop.svc.cluster.local",
		Addresses: []ambient.NetworkAddress{{Addr: netip.MustParseAddr("10.96.0.8")}}}
	pod := &ambient.Workload{UID: "Kubernetes//Pod/shop/p", Name: "p", Namespace: "shop", Addrs: []netip.Addr{netip.MustParseAddr("10.244.1.1")}, Healthy: true}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: ambient.TypeURL, Nonce: "1", Resources: []*discovery.Resource{
		addressResource("shop/"+cart.Hostname, ambient.EncodeService(cart)), addressResource(pod.UID, ambient.EncodeWorkload(pod))}}
	waitFor(t, "ready after the first push", m.Ready)
	if v := m.viewFor(netip.MustParseAddr("10.244.1.1")); v.Namespace != "shop" {
		t.Errorf("the pod's view %q", v.Namespace)
	}
	if r := serve(t, m, (&test.Case{Qname: "cart.shop.", Qtype: dns.TypeA}).Msg()); len(r.Answer) != 1 {
		t.Errorf("after the push: %v", r)
	}
	srv.Request() // ACK
	m.store.stop()
	waitFor(t, "the stream closed after shutdown", func() bool { return srv.OpenStreams() == 0 })
}

// benchMesh is a mesh of 10k Services (7k with a VIP, 3k headless) and 30k pods, 3 per Service, as
// Address resources and as the NameTable istiod's NDS would give for it (Services and per-pod names).
func benchMesh() (addresses []*discovery.Resource, names []table.Entry) {
	for i := range 10_000 {
		ns, name := fmt.Sprintf("ns%d", i%100), fmt.Sprintf("svc%d", i)
		host := name + "." + ns + ".svc.cluster.local"
		s := &ambient.Service{Name: name, Namespace: ns, Hostname: host}
		e := table.Entry{Host: host, Registry: table.RegistryKubernetes, ShortName: name, Namespace: ns}
		headless := i%10 >= 7
		if !headless {
			vip := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
			s.Addresses = []ambient.NetworkAddress{{Addr: vip}}
			e.Addrs = []netip.Addr{vip}
		}
		addresses = append(addresses, addressResource(ns+"/"+host, ambient.EncodeService(s)))
		for j := range 3 {
			w := benchPod(name, ns, i*3+j, 0)
			addresses = append(addresses, addressResource(w.UID, ambient.EncodeWorkload(w)))
			if headless {
				e.Addrs = append(e.Addrs, w.Addrs...)
				names = append(names, table.Entry{Host: w.Name + "." + host, Registry: table.RegistryKubernetes, ShortName: w.Name + "." + name, Namespace: ns, Addrs: w.Addrs})
			}
		}
		names = append(names, e)
	}
	return addresses, names
}

func benchPod(svc, ns string, i, moved int) *ambient.Workload {
	return &ambient.Workload{UID: fmt.Sprintf("Kubernetes//Pod/%s/%s-%d", ns, svc, i), Name: fmt.Sprintf("%s-%d", svc, i), Namespace: ns,
		Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(moved), byte(i >> 8), byte(i)})}, Services: []string{ns + "/" + svc + "." + ns + ".svc.cluster.local"},
		Healthy: true, Pod: true}
}

func startBench(b *testing.B, corefile string) *MeshDNS {
	c := caddy.NewTestController("dns", corefile)
	c.ServerBlockKeys = []string{"."}
	m, err := parse(c)
	if err != nil {
		b.Fatal(err)
	}
	m.Next = test.NextHandler(dns.RcodeRefused, nil)
	m.store.start("dns://bench")
	return m
}

// answersWith reports whether the table answers qname with addr.
func answersWith(m *MeshDNS, qname string, addr netip.Addr) bool {
	t := m.store.table()
	if t == nil {
		return false
	}
	rrs, _ := t.Answer(t.Lookup(qname, m.view), qname, dns.TypeA)
	for _, rr := range rrs {
		if a, ok := rr.(*dns.A); ok && a.A.Equal(addr.AsSlice()) {
			return true
		}
	}
	return false
}

// BenchmarkControlPlanes compares the ambient and nds sources on the same 10k-Service, 30k-pod mesh,
// over a real gRPC stream into the real store: the time from the first push to a ready table (and
// the heap the first instance holds then: its table and its source's state), and from one pod moving (a 1-resource delta to ambient, a whole NameTable to nds) to
// its new address being answered.
func BenchmarkControlPlanes(b *testing.B) {
	addresses, names := benchMesh()
	const pod = "svc9-27.svc9.ns9.svc.cluster.local." // svc9 is headless
	for _, kind := range []string{"ambient", "nds"} {
		first := func() any {
			if kind == "ambient" {
				return &discovery.DeltaDiscoveryResponse{TypeUrl: ambient.TypeURL, Nonce: "0", Resources: addresses}
			}
			return &discovery.DiscoveryResponse{TypeUrl: nds.TypeURL, VersionInfo: "0", Nonce: "0",
				Resources: []*anypb.Any{{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable(names)}}}
		}
		b.Run(kind+"/first", func(b *testing.B) {
			srv := ndstest.New(b, nil)
			srv.OnOpen = first
			heapInUse := func() uint64 {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return ms.HeapInuse
			}
			var heap uint64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				before := heapInUse()
				b.StartTimer()
				m := startBench(b, "meshdns {\n "+kind+" "+srv.Addr+"\n}")
				for !m.Ready() {
					time.Sleep(100 * time.Microsecond)
				}
				b.StopTimer()
				if i == 0 { // later instances overlap with the one a reload would carry from
					heap = heapInUse() - before
				}
				m.store.stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
		})
		b.Run(kind+"/change", func(b *testing.B) {
			srv := ndstest.New(b, nil)
			srv.OnOpen = first
			m := startBench(b, "meshdns {\n "+kind+" "+srv.Addr+"\n}")
			defer m.store.stop()
			for !m.Ready() {
				time.Sleep(time.Millisecond)
			}
			moved := names
			i := 0
			for b.Loop() {
				i++
				w := benchPod("svc9", "ns9", 27, 1+i%200)
				if kind == "ambient" {
					srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: ambient.TypeURL, Nonce: fmt.Sprint(i),
						Resources: []*discovery.Resource{addressResource(w.UID, ambient.EncodeWorkload(w))}}
				} else {
					b.StopTimer()
					moved = append(moved[:0:0], names...)
					for j := range moved {
						if moved[j].Host+"." == pod {
							moved[j].Addrs = w.Addrs
						}
					}
					body := nds.EncodeNameTable(moved)
					b.StartTimer()
					srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: nds.TypeURL, VersionInfo: fmt.Sprint(i), Nonce: fmt.Sprint(i),
						Resources: []*anypb.Any{{TypeUrl: nds.TypeURL, Value: body}}}
				}
				for !answersWith(m, pod, w.Addrs[0]) {
					time.Sleep(20 * time.Microsecond)
				}
			}
		})
	}
}
