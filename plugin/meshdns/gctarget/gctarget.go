// Package gctarget sets the garbage collector's target for the process: Go's default while the
// first tables are built, half of it once a resolver mostly sits on its table, and less again while
// an informer lists what it already holds (a relist). An operator's GOGC overrides all of it.
package gctarget

import (
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

var log = clog.NewWithPlugin("meshdns")

const (
	// steadyPercent, once the first table is served: a new heap of half the live one between
	// collections, not all of it. The first lists are collected at Go's default (100), which gets
	// to ready soonest; after that what allocates in bursts is a relist or a large push, whose
	// garbage would otherwise double the process's memory on every node at once.
	steadyPercent = 50
	// relistPercent, while a relist streams: every object is decoded whole and dropped for the copy
	// held (kubewatch.Reuse), so the live heap hardly grows and all the stream makes is garbage. At
	// steady's target that garbage was a fifth of the process's RSS at its peak (an API server's
	// restart, 10k Services, 20k pods); the extra collections cost CPU only while it lasts.
	relistPercent = 20
	// relistQuiet is how long after the last object a relist brought back the steady target returns.
	relistQuiet = time.Second
)

// policy is the process's target; a variable so that tests can watch what it sets.
type policy struct {
	operatorSet bool          // GOGC in the environment: we set nothing
	set         func(int) int // debug.SetGCPercent
	quiet       time.Duration // relistQuiet
	logf        func(string, ...any)

	mu       sync.Mutex
	settled  bool         // the first table is served
	relist   atomic.Bool  // relistPercent is set
	lastSeen atomic.Int64 // unix nanoseconds of the last Relisting
}

var process = &policy{
	operatorSet: func() bool { _, set := os.LookupEnv("GOGC"); return set }(),
	set:         debug.SetGCPercent,
	quiet:       relistQuiet,
	logf:        log.Infof,
}

// Settle sets the steady target once the first table is served (once per process).
func Settle() { process.settle() }

// Relisting says an informer was handed again an object it holds: a relist is streaming. It is
// called for every such object, and costs an atomic store when the relist target is already set.
func Relisting() { process.relisting() }

func (p *policy) settle() {
	if p.operatorSet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.settled {
		return
	}
	p.settled = true
	if !p.relist.Load() {
		p.set(steadyPercent)
	}
	p.logf("first table served: garbage collected at %d%% of the live heap from now on (GOGC unset)", steadyPercent)
}

func (p *policy) relisting() {
	if p.operatorSet {
		return
	}
	p.lastSeen.Store(time.Now().UnixNano())
	if p.relist.Load() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.settled || p.relist.Load() { // the first lists hold nothing yet; or another relist set it
		return
	}
	p.relist.Store(true)
	p.set(relistPercent)
	p.logf("a relist is streaming objects already held: garbage collected at %d%% of the live heap until it ends", relistPercent)
	time.AfterFunc(p.quiet, p.endRelist)
}

// endRelist restores the steady target once no relisted object came for quiet.
func (p *policy) endRelist() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if since := time.Since(time.Unix(0, p.lastSeen.Load())); since < p.quiet {
		time.AfterFunc(p.quiet-since, p.endRelist)
		return
	}
	p.set(steadyPercent)
	p.relist.Store(false)
	p.logf("relist over: garbage collected at %d%% of the live heap again", steadyPercent)
}
