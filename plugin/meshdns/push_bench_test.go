package meshdns

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/types/known/anypb"
)

// BenchmarkNDSPush is a state-of-the-world NDS push applied end to end, as a one-node nds source
// applies it: the NameTable's bytes read and the changed entries decoded (nds), the changes folded
// into the store, and the table updated (an overlay, or a whole build past what an overlay takes)
// and swapped in. Each push moves 1% of the addresses, round robin, as bench/ndspush does; the
// pushes are encoded outside the timer. "changes" is nds handing the store only what changed;
// "whole" is every push published whole for the store to diff, as before nds diffed pushes itself.
// The mean covers the pushes that build whole; max-ms/push is the slowest push, alloc-MB/push the
// garbage one push leaves, which the GC then pays for on the serving core. With -cpu 1 it includes
// the yields that let queries in on one P.
func BenchmarkNDSPush(b *testing.B) {
	for _, mode := range []string{"changes", "whole"} {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/%dk", mode, n/1000), func(b *testing.B) { benchPush(b, n, mode == "whole") })
		}
	}
}

// wholeSink is the store's sink without Change.
type wholeSink struct{ k *sink }

func (w wholeSink) Publish(e []table.Entry) { w.k.Publish(e) }
func (w wholeSink) Reject(err error)        { w.k.Reject(err) }

func benchPush(b *testing.B, n int, whole bool) {
	entries := pushEntries(n)
	src, err := nds.New(&nds.Config{Address: "127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	st := newStore(table.Options{ClusterDomain: "cluster.local", TTL: 30})
	st.add(src, nil)
	defer st.stop()
	var k source.Sink = &sink{store: st, index: 0}
	if whole {
		k = wholeSink{k.(*sink)}
	}
	h := src.NewHandler(k)
	var (
		slowest       time.Duration
		allocated     uint64
		before, after runtime.MemStats
	)
	push := func(version int) {
		body := &anypb.Any{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable(entries)}
		r := &xds.Response{Version: strconv.Itoa(version), Resources: []xds.Resource{{Body: body}}}
		runtime.ReadMemStats(&before)
		b.StartTimer()
		start := time.Now()
		if err := h.Apply(r); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		b.StopTimer()
		runtime.ReadMemStats(&after)
		allocated += after.TotalAlloc - before.TotalAlloc
		slowest = max(slowest, d)
	}
	b.StopTimer()
	push(0) // the first table, built whole
	b.ResetTimer()
	b.StopTimer()
	slowest, allocated = 0, 0
	step, next := n/100, 0
	for i := range b.N {
		for range step {
			a := entries[next].Addrs[0].As4()
			a[1] ^= 16 // 10.96/12 <-> 10.112/12, as ndspush
			entries[next].Addrs = []netip.Addr{netip.AddrFrom4(a)}
			next = (next + 1) % n
		}
		push(i + 1)
	}
	b.ReportMetric(float64(slowest.Microseconds())/1000, "max-ms/push")
	b.ReportMetric(float64(allocated)/float64(b.N)/1e6, "alloc-MB/push")
	if st.table().Len() != n {
		b.Fatalf("%d hosts served, want %d", st.table().Len(), n)
	}
}

// pushEntries are bench/ndspush's services: svcI.nsJ.svc.cluster.local over 50 namespaces.
func pushEntries(n int) []table.Entry {
	out := make([]table.Entry, n)
	for i := range out {
		short, ns := "svc"+strconv.Itoa(i), "ns"+strconv.Itoa(i%50)
		a := uint32(10<<24|96<<16) + uint32(i) + 1
		out[i] = table.Entry{Host: short + "." + ns + ".svc.cluster.local", Registry: table.RegistryKubernetes,
			ShortName: short, Namespace: ns,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})}}
	}
	return out
}
