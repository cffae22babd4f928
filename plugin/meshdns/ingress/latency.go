package ingress

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Latency is how long the answers Respond gave took at the server: from the kernel's receive
// timestamp of a query (SO_TIMESTAMPNS) to its reply handed back to the kernel, which counts the
// time the query waited in the socket behind other work of the process (a push being applied, a
// collection) as well as the time it took. A client's own latency adds its side and the network's,
// and on a shared machine the client's scheduling: this is the server's part alone.
//
// Its buckets split each octave from 1 µs (1024 ns) to 67 ms (2^26 ns) in four (bounds 12-25% apart),
// fine enough that a quantile read from them is within some 10% of the true one. Each socket's loop
// counts into buckets of its own, so that counting an answer is an increment of memory no other CPU
// writes; Snapshot adds them up.
type Latency struct {
	mu     sync.Mutex
	shards []*latencyShard
}

const (
	firstOctave = 10 // 2^10 ns: the first bound, about 1 µs
	lastOctave  = 26 // 2^26 ns: the last bound, 67 ms
	// One bucket under the first bound, four an octave up to the last, one past it.
	latencySlots = 1 + 4*(lastOctave-firstOctave) + 1
)

type latencyShard struct {
	counts [latencySlots]atomic.Uint64
	sumNs  atomic.Int64
	_      [64]byte // the next shard's counters on another cache line
}

// shard is a socket loop's own buckets.
func (l *Latency) shard() *latencyShard {
	s := &latencyShard{}
	l.mu.Lock()
	l.shards = append(l.shards, s)
	l.mu.Unlock()
	return s
}

// slot is the bucket of ns: an octave's bucket from its leading bit, its quarter from the two after.
func slot(ns int64) int {
	switch {
	case ns < 1<<firstOctave:
		return 0
	case ns >= 1<<lastOctave:
		return latencySlots - 1
	}
	octave := bits.Len64(uint64(ns)) - 1 // 2^octave <= ns < 2^(octave+1)
	quarter := int(ns>>(octave-2)) & 3
	return 1 + 4*(octave-firstOctave) + quarter
}

// bound is the upper bound, in ns, of slot i (not the last).
func bound(i int) float64 {
	if i == 0 {
		return 1 << firstOctave
	}
	octave, quarter := firstOctave+(i-1)/4, (i-1)%4
	return math.Ldexp(1+float64(quarter+1)/4, octave)
}

func (s *latencyShard) observe(ns int64) {
	if ns < 0 {
		ns = 0 // a clock stepped back between the two timestamps
	}
	s.counts[slot(ns)].Add(1)
	s.sumNs.Add(ns)
}

// Bounds are the buckets' upper bounds in seconds, the last finite one included.
func Bounds() []float64 {
	out := make([]float64, latencySlots-1)
	for i := range out {
		out[i] = bound(i) / 1e9
	}
	return out
}

// Snapshot returns, for each of Bounds, how many answers took at most that long (cumulative, as a
// Prometheus histogram counts), and the count and sum in seconds of all of them.
func (l *Latency) Snapshot() (cumulative []uint64, count uint64, sum float64) {
	var counts [latencySlots]uint64
	var sumNs int64
	l.mu.Lock()
	for _, s := range l.shards {
		for i := range counts {
			counts[i] += s.counts[i].Load()
		}
		sumNs += s.sumNs.Load()
	}
	l.mu.Unlock()
	cumulative = make([]uint64, latencySlots-1)
	for i := range cumulative {
		count += counts[i]
		cumulative[i] = count
	}
	count += counts[latencySlots-1]
	return cumulative, count, float64(sumNs) / 1e9
}

// wantTimestamps asks the kernel to stamp each datagram with the time it received it.
func wantTimestamps(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

// receivedAt is the kernel's receive timestamp among a datagram's control messages oob, in ns since
// the Unix epoch, or 0 without one.
func receivedAt(oob []byte) int64 {
	for h, data, rest, ok := nextControlMessage(oob); ok; h, data, rest, ok = nextControlMessage(rest) {
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			return (*unix.Timespec)(unsafe.Pointer(&data[0])).Nano()
		}
	}
	return 0
}
