// Package pace lets queries in during long work on the serving process (a control plane's push, a
// table build) when the Go runtime has a single P, as it has when the resolver is limited to one
// core (taskset, a CPU limit of 1).
//
// runtime.Gosched does not do that: it puts the goroutine on the global run queue, and the scheduler
// takes it straight back from there, since it polls the network only when no goroutine is runnable.
// The queries, whose goroutines wait in the network poller, then wait for sysmon to poll it, every
// 10 ms at best: a push of a few tens of milliseconds stalls them that long. Parking on a short timer
// leaves nothing runnable, so the scheduler polls the network first and serves whatever arrived.
package pace

import (
	"runtime"
	"time"
)

const (
	// Slice is how long work runs between yields: the most it adds to a query's latency.
	Slice = 500 * time.Microsecond
	// nap is how long a yield parks. It only needs to outlast the scheduler's first look at the
	// timers; an idle process then waits in epoll, which sleeps whole milliseconds, for at most 1 ms.
	nap = 20 * time.Microsecond
	// checkEvery is how many ticks pass between looks at the clock.
	checkEvery = 32
)

// Pacer yields every Slice of work; the zero value is ready. Call Tick once per unit of work (an
// entry decoded, a name indexed).
type Pacer struct {
	n     uint32
	since time.Time
}

// Tick counts one unit of work and yields when the work has held the P for a Slice.
func (p *Pacer) Tick() {
	p.n++
	if p.n%checkEvery != 0 {
		return
	}
	now := time.Now()
	if p.since.IsZero() || now.Sub(p.since) < Slice {
		if p.since.IsZero() {
			p.since = now
		}
		return
	}
	Yield()
	p.since = time.Now()
}

// Yield lets the goroutines waiting on the network run, when they cannot run beside this one.
func Yield() {
	if runtime.GOMAXPROCS(0) > 1 {
		return // an idle P polls the network meanwhile
	}
	time.Sleep(nap)
}
