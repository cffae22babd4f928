package table

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"

	"github.com/miekg/dns"
)

// benchEntries makes n Kubernetes services over 100 namespaces, one external host in 20 and one
// wildcard in 100, like a large mesh.
func benchEntries(n int) []Entry {
	out := make([]Entry, 0, n)
	for i := range n {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		switch {
		case i%100 == 99:
			out = append(out, external(fmt.Sprintf("*.wild%d.example.com", i), ip.String()))
		case i%20 == 19:
			out = append(out, external(fmt.Sprintf("api%d.example.com", i), ip.String()))
		default:
			ns := fmt.Sprintf("ns%d", i%100)
			out = append(out, k8s(fmt.Sprintf("svc%d.%s.svc.cluster.local", i, ns), fmt.Sprintf("svc%d", i), ns, ip.String()))
		}
	}
	return out
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		entries := benchEntries(n)
		tbl := Build(entries, opts)
		// The same table with 500 other hosts changed since it was built whole (table.Update).
		changes := map[string][]Entry{}
		for i := 2000; i < 2500; i++ {
			changes[entries[i].Host] = entries[i : i+1]
		}
		for _, t := range []struct {
			name string
			tbl  *Table
		}{{"", tbl}, {"overlay-", tbl.Update(changes)}} {
			benchLookups(b, t.name, n, t.tbl)
		}
	}
}

func benchLookups(b *testing.B, prefix string, n int, tbl *Table) {
	{
		v := NewView("ns1", nil, "cluster.local")
		for _, q := range []struct {
			kind, qname string
			qtype       uint16
		}{
			{"hit", "svc1001.ns1.svc.cluster.local.", dns.TypeA},
			{"hit-mixedcase", "Svc1001.NS1.svc.cluster.local.", dns.TypeA},
			{"nodata", "svc1001.ns1.svc.cluster.local.", dns.TypeAAAA},
			{"miss", "www.example.org.", dns.TypeA},
			{"miss-searchsuffixed", "www.example.org.ns1.svc.cluster.local.", dns.TypeA},
			{"short", "svc1001.", dns.TypeA},
			{"short-ns", "svc1002.ns2.", dns.TypeA},
			{"search-suffixed", "svc1002.ns2.svc.cluster.local.ns1.svc.cluster.local.", dns.TypeA},
			{"wildcard", "a.b.wild199.example.com.", dns.TypeA},
		} {
			b.Run(fmt.Sprintf("%s%s/%dk", prefix, q.kind, n/1000), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					m := tbl.Lookup(q.qname, v)
					if m.Found() {
						tbl.Answer(m, q.qname, q.qtype)
					}
				}
			})
		}
	}
}

// processCPU is the user and system CPU time this process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkBuild reports the time to index a table and the heap it keeps, per name.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		entries := benchEntries(n)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			cpu := processCPU()
			for b.Loop() {
				Build(entries, opts)
			}
			b.StopTimer()
			// The CPU the builds took, GC included: on a shared machine, steadier than the wall clock.
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tbl := Build(entries, opts)
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-bytes/name")
			runtime.KeepAlive(tbl)
		})
	}
}

// BenchmarkUpdate is the cost of one changed host on a large table, against BenchmarkBuild.
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		entries := benchEntries(n)
		tbl := Build(entries, opts)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			i := 0
			for b.Loop() {
				e := entries[i%len(entries)]
				e.Addrs = addrs("10.99.0.1")
				tbl.Update(map[string][]Entry{e.Host: {e}})
				i++
			}
		})
	}
}
