package nds

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

func benchTable(n int) []byte {
	entries := make([]table.Entry, n)
	for i := range entries {
		ns := fmt.Sprintf("ns%d", i%100)
		entries[i] = table.Entry{
			Host: fmt.Sprintf("svc%d.%s.svc.cluster.local", i, ns), Registry: "Kubernetes", ShortName: fmt.Sprintf("svc%d", i), Namespace: ns,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
		}
	}
	return EncodeNameTable(entries)
}

// BenchmarkDecodePush is the decoding of a whole NameTable push.
func BenchmarkDecodePush(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		data := benchTable(n)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := DecodeNameTable(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyPush is what a push costs before it serves: decoding, merging and indexing.
func BenchmarkApplyPush(b *testing.B) {
	opts := table.Options{ClusterDomain: "cluster.local", TTL: 30}
	for _, n := range []int{10_000, 100_000} {
		data := benchTable(n)
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				entries, err := DecodeNameTable(data)
				if err != nil {
					b.Fatal(err)
				}
				table.Build(entries, opts)
			}
		})
	}
}
