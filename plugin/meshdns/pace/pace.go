// Package pace lets queries in during long work on the serving process (a control plane's push, a
// table build) when the Go runtime has a single P, as it has when the resolver is limited to one
// core (taskset, a CPU limit of 1).
//
// runtime.Gosched does not do that: it puts the goroutine on the global run queue, and the scheduler
// takes it straight back from there, since it polls the network only when no goroutine is runnable.
// The queries, whose goroutines wait in the network poller, then wait for sysmon to poll it, every
// 10 ms at best: a push of a few tens of milliseconds stalls them that long. Parking on a short timer
// leaves nothing runnable, so the scheduler polls the network first and serves whatever arrived.
//
// Every pacer keeps one clock: the time since work last yielded, whichever pacer it was. A push goes
// through several phases (reading the push, decoding what changed, updating the table), each with
// its own pacer; were each to count its slice from its own start, the phases shorter than a slice
// would never yield and their sum would hold the P for milliseconds.
package pace

import (
	"runtime"
	"sync/atomic"
	"time"
)

const (
	// Slice is how long work runs between yields: the most it adds to a query's latency.
	Slice = 200 * time.Microsecond
	// nap is how long a yield parks. It only needs to outlast the scheduler's first look at the
	// timers; an idle process then waits in epoll, which sleeps whole milliseconds, for at most 1 ms.
	nap = 20 * time.Microsecond
	// checkEvery is how many ticks pass between looks at the clock.
	checkEvery = 32
)

var (
	epoch = time.Now()
	// yielded is when work last yielded, as time since epoch (monotonic).
	yielded atomic.Int64
)

// Pacer counts units of work between looks at the clock; the zero value is ready. Call Tick once per
// unit of work (an entry decoded, a name indexed).
type Pacer struct{ n uint32 }

// Tick counts one unit of work and, every few, yields when work has held the P for a Slice.
func (p *Pacer) Tick() {
	p.n++
	if p.n%checkEvery == 0 {
		Check()
	}
}

// Check yields when work has held the P for a Slice since it last yielded: call it between phases
// of work that have no Pacer of their own.
func Check() {
	if time.Since(epoch)-time.Duration(yielded.Load()) < Slice {
		return
	}
	Yield()
	yielded.Store(int64(time.Since(epoch)))
}

// Yield lets the goroutines waiting on the network run, when they cannot run beside this one.
func Yield() {
	if runtime.GOMAXPROCS(0) > 1 {
		return // an idle P polls the network meanwhile
	}
	time.Sleep(nap)
}
