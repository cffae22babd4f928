package ingress

import (
	"math"
	"net"
	"testing"
	"time"
)

// TestLatencyBucketsHoldTheirDurations: every duration falls in the bucket whose bound is the first
// at or above it, from under a microsecond to past the last bound.
func TestLatencyBucketsHoldTheirDurations(t *testing.T) {
	bounds := Bounds()
	if len(bounds) != latencySlots-1 {
		t.Fatalf("%d bounds for %d buckets", len(bounds), latencySlots)
	}
	for i := 1; i < len(bounds); i++ {
		if r := bounds[i] / bounds[i-1]; r <= 1 || r > 1.26 {
			t.Fatalf("bound %d is %g times bound %d", i, r, i-1)
		}
	}
	if bounds[0] > 1.1e-6 || bounds[len(bounds)-1] < 0.06 {
		t.Errorf("bounds from %g s to %g s", bounds[0], bounds[len(bounds)-1])
	}
	for ns := int64(0); ns < 1<<28; ns = ns*21/20 + 1 {
		i := slot(ns)
		s := float64(ns) / 1e9
		if i < len(bounds) && s > bounds[i] {
			t.Fatalf("%d ns in bucket %d, bounded by %g s", ns, i, bounds[i])
		}
		if i > 0 && s < bounds[i-1] {
			t.Fatalf("%d ns in bucket %d, above the bound %g s of the one before", ns, i, bounds[i-1])
		}
	}
}

func TestLatencySnapshotAddsUpItsShards(t *testing.T) {
	var l Latency
	a, b := l.shard(), l.shard()
	for _, d := range []time.Duration{500 * time.Nanosecond, 3 * time.Microsecond, 40 * time.Microsecond} {
		a.observe(int64(d))
	}
	b.observe(int64(time.Second)) // past the last bound
	b.observe(-5)                 // a clock stepped back: counted as no time
	cumulative, count, sum := l.Snapshot()
	if count != 5 {
		t.Errorf("count %d, want 5", count)
	}
	if want := (500e-9 + 3e-6 + 40e-6 + 1); math.Abs(sum-want) > 1e-9 {
		t.Errorf("sum %g s, want %g", sum, want)
	}
	bounds := Bounds()
	for i, b := range bounds {
		want := uint64(0)
		for _, d := range []float64{0, 500e-9, 3e-6, 40e-6} {
			if d <= b {
				want++
			}
		}
		if cumulative[i] != want {
			t.Fatalf("at most %g s: %d, want %d", b, cumulative[i], want)
		}
	}
}

// TestIngressTimesItsAnswers: with a Latency, an ingress on a specific address and one on a
// wildcard (where the timestamp comes beside the destination address) count each answer Respond
// gave, from the kernel's receive timestamp, and not the chain's.
func TestIngressTimesItsAnswers(t *testing.T) {
	for _, tc := range []struct{ listen, ask string }{{"127.0.0.1", "127.0.0.1"}, {"", "127.0.0.2"}} {
		addr := coreDNSSocket(t, net.JoinHostPort(tc.listen, "0"))
		_, port, _ := net.SplitHostPort(addr)
		var c counted
		counts := c.counts()
		counts.Latency = &Latency{}
		listen(t, net.JoinHostPort(tc.listen, port), answerWith("10.0.0.3"), counts)
		start := time.Now()
		for range 5 {
			askConnected(t, net.JoinHostPort(tc.ask, port), "fast.example.")
			askConnected(t, net.JoinHostPort(tc.ask, port), "slow.example.")
		}
		elapsed := time.Since(start).Seconds()
		if c.answered.Load() != 5 {
			t.Fatalf("listening on %q: %d answered from bytes, want 5", tc.listen, c.answered.Load())
		}
		_, count, sum := counts.Latency.Snapshot()
		if count != 5 || sum <= 0 || sum > elapsed {
			t.Errorf("listening on %q: %d answers timed, %g s in all (the questions took %g s), want 5 in less", tc.listen, count, sum, elapsed)
		}
	}
}

// FuzzControlMessages: the readers of a datagram's control messages (its destination, its receive
// timestamp) take whatever the buffer holds without reading past it.
func FuzzControlMessages(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{32, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 35, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		oob := alignedBytes(len(b)) // as the kernel writes them: aligned for their headers
		copy(oob, b)
		receivedAt(oob)
		if a, ok := destinationOf(oob); ok != a.IsValid() {
			t.Fatalf("destination %v, ok %v", a, ok)
		}
	})
}
