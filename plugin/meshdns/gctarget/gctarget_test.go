package gctarget

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a policy whose targets are written down instead of set.
type recorder struct {
	mu  sync.Mutex
	got []int
}

func (r *recorder) set(percent int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, percent)
	return 0
}

func (r *recorder) targets() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func newPolicy(operatorSet bool, quiet time.Duration) (*policy, *recorder) {
	r := &recorder{}
	return &policy{operatorSet: operatorSet, set: r.set, quiet: quiet, logf: func(string, ...any) {}}, r
}

// waitFor polls until r has recorded want, failing after a generous while.
func waitFor(t *testing.T, r *recorder, want []int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if slices.Equal(r.targets(), want) {
			return
		}
	}
	t.Fatalf("targets set %v, want %v", r.targets(), want)
}

func TestRelistLowersThenRestores(t *testing.T) {
	// A quiet period long beside the stream's gaps below, even on a loaded machine.
	p, r := newPolicy(false, 500*time.Millisecond)
	p.relisting() // the first lists: nothing is held yet, nothing changes
	if got := r.targets(); len(got) != 0 {
		t.Fatalf("before the first table: set %v", got)
	}
	p.settle()
	p.settle()
	waitFor(t, r, []int{steadyPercent})

	// A relist of many objects sets the relist target once, and keeps it while objects come.
	for range 12 {
		p.relisting()
		time.Sleep(50 * time.Millisecond) // 600 ms of stream, longer than the quiet period
	}
	if got := r.targets(); !slices.Equal(got, []int{steadyPercent, relistPercent}) {
		t.Fatalf("during the relist: set %v", got)
	}
	waitFor(t, r, []int{steadyPercent, relistPercent, steadyPercent})

	// And the next relist again.
	p.relisting()
	waitFor(t, r, []int{steadyPercent, relistPercent, steadyPercent, relistPercent, steadyPercent})
}

func TestOperatorsGOGCIsLeftAlone(t *testing.T) {
	p, r := newPolicy(true, 20*time.Millisecond)
	p.settle()
	p.relisting()
	time.Sleep(3 * p.quiet)
	if got := r.targets(); len(got) != 0 {
		t.Fatalf("with GOGC set: set %v", got)
	}
}

func TestRelistingConcurrently(t *testing.T) {
	p, r := newPolicy(false, 500*time.Millisecond)
	p.settle()
	var wg sync.WaitGroup
	for range 8 { // informers of several resources relisting at once
		wg.Go(func() {
			for range 1000 {
				p.relisting()
			}
		})
	}
	wg.Wait()
	waitFor(t, r, []int{steadyPercent, relistPercent, steadyPercent})
}
