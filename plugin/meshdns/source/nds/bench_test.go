package nds

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/types/known/anypb"
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

// nullSink takes snapshots and changes and drops them.
type nullSink struct{ hosts int }

func (n *nullSink) Publish(e []table.Entry)               {}
func (n *nullSink) Reject(error)                          {}
func (n *nullSink) Change(hosts map[string][]table.Entry) { n.hosts += len(hosts) }

// BenchmarkNamespacePush is one namespace's push of a 10k-name table in which one host moved, with
// 20 namespaces subscribed: the diff and the folding of what changed, not the decoding.
func BenchmarkNamespacePush(b *testing.B) {
	entries, err := DecodeNameTable(benchTable(10_000))
	if err != nil {
		b.Fatal(err)
	}
	k := &nullSink{}
	p := &perNamespace{src: &Source{cfg: &Config{Address: "bench"}}, sink: k, subs: map[string]*subscription{},
		tables: map[string]map[string][]table.Entry{}, hosts: map[string][]table.Entry{}, armed: true}
	var sub *subscription
	for i := range 20 {
		ns := fmt.Sprintf("ns%d", i)
		sub = &subscription{}
		p.subs[ns] = sub
		p.applied(ns, sub, entries)
	}
	moved := slices.Clone(entries)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		moved[0].Addrs = []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}
		p.applied("ns19", sub, moved)
	}
	if k.hosts < b.N {
		b.Fatalf("%d hosts changed in %d pushes", k.hosts, b.N)
	}
}

// BenchmarkSamePush is a per-namespace subscription's handling of a 10k-name push identical to the
// last one applied: hashed and skipped.
func BenchmarkSamePush(b *testing.B) {
	r := &xds.Response{Resources: []xds.Resource{{Body: &anypb.Any{TypeUrl: TypeURL, Value: benchTable(10_000)}}}}
	published := 0
	h := newHandler(func([]table.Entry) { published++ }, func(error) {})
	h.skipSame = true
	if err := h.Apply(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Apply(r); err != nil {
			b.Fatal(err)
		}
	}
	if published != 1 {
		b.Fatalf("published %d times", published)
	}
}

// BenchmarkDiffPush is nds's share of a push of a table in which 1% of the hosts moved: reading
// every entry's bytes, decoding the changed ones (differ), without the store's part.
func BenchmarkDiffPush(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			entries, err := DecodeNameTable(benchTable(n))
			if err != nil {
				b.Fatal(err)
			}
			// Two versions a 1% apart, applied in turn: each push changes n/100 hosts.
			moved := slices.Clone(entries)
			for i := 0; i < n; i += 100 {
				moved[i].Addrs = []netip.Addr{netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})}
			}
			pushes := [][]byte{EncodeNameTable(entries), EncodeNameTable(moved)}
			d := newDiffer()
			if _, _, _, err := d.apply(pushes[0]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(pushes[0])))
			i := 0
			for b.Loop() {
				i++
				changed, _, _, err := d.apply(pushes[i%2])
				if err != nil || len(changed) != n/100 {
					b.Fatalf("%d changed, error %v", len(changed), err)
				}
			}
		})
	}
}
