package ambient

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/types/known/anypb"
)

// discardSink takes changes and drops them.
type discardSink struct{ hosts int }

func (d *discardSink) Publish([]table.Entry)             {}
func (d *discardSink) Change(h map[string][]table.Entry) { d.hosts += len(h) }
func (d *discardSink) Reject(error)                      {}
func resource(name string, b []byte) xds.Resource {
	return xds.Resource{Name: name, Version: "1", Body: &anypb.Any{TypeUrl: TypeURL, Value: b}}
}
func podAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}
func podOf(svc, ns string, i int) *Workload {
	return &Workload{UID: fmt.Sprintf("Kubernetes//Pod/%s/%s-%d", ns, svc, i), Name: fmt.Sprintf("%s-%d", svc, i), Namespace: ns,
		Addrs: []netip.Addr{podAddr(i)}, Services: []string{ns + "/" + svc + "." + ns + ".svc.cluster.local"}, Healthy: true, Pod: true}
}

// meshPush is a first push of 10k Services (7k with a VIP, 3k headless) and 30k Workloads (pods of
// both kinds, 3 per Service).
func meshPush() *xds.Response {
	r := &xds.Response{Delta: true}
	for i := range 10_000 {
		ns, name := fmt.Sprintf("ns%d", i%100), fmt.Sprintf("svc%d", i)
		s := &Service{Name: name, Namespace: ns, Hostname: name + "." + ns + ".svc.cluster.local"}
		if i%10 < 7 {
			s.Addresses = []NetworkAddress{{Addr: netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})}}
		}
		r.Resources = append(r.Resources, resource(ns+"/"+s.Hostname, EncodeService(s)))
		for j := range 3 {
			w := podOf(name, ns, i*3+j)
			r.Resources = append(r.Resources, resource(w.UID, EncodeWorkload(w)))
		}
	}
	return r
}

// BenchmarkWorkloadChange is the cost, past the first push, of one pod of a headless Service
// moving to another address: decoding, the index, and the hosts handed to the store (its Service's
// name and the pod's own).
func BenchmarkWorkloadChange(b *testing.B) {
	sink := &discardSink{}
	h := &handler{src: &Source{cfg: &Config{}}, sink: sink, idx: newIndex("cluster.local", "")}
	if err := h.Apply(meshPush()); err != nil {
		b.Fatal(err)
	}
	w := podOf("svc9", "ns9", 27) // svc9 is headless
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		w.Addrs = []netip.Addr{netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)})}
		if err := h.Apply(&xds.Response{Delta: true, Resources: []xds.Resource{resource(w.UID, EncodeWorkload(w))}}); err != nil {
			b.Fatal(err)
		}
	}
	if sink.hosts != 2*b.N {
		b.Errorf("%d hosts changed over %d moves, want 2 each", sink.hosts, b.N)
	}
}

// BenchmarkFirstPush is the cost of the first push of a 10k-Service, 30k-Workload mesh, to the
// snapshot the store builds from.
func BenchmarkFirstPush(b *testing.B) {
	r := meshPush()
	b.ReportAllocs()
	for b.Loop() {
		h := &handler{src: &Source{cfg: &Config{}}, sink: &discardSink{}, idx: newIndex("cluster.local", "")}
		if err := h.Apply(r); err != nil {
			b.Fatal(err)
		}
	}
}
