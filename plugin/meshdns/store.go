package meshdns

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// store turns the snapshots of the sources into the table being served. Sources publish into it; the
// handler only loads the current table, so a query never waits on a source.
type store struct {
	opts    table.Options
	sources []source.Source
	server  string // metric label, known once the server is set up

	mu      sync.Mutex // serialises rebuilds
	snaps   [][]table.Entry
	have    []bool
	cur     atomic.Pointer[table.Table]
	ready   atomic.Bool
	readyCh chan struct{} // closed when ready first turns true

	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newStore(opts table.Options) *store {
	return &store{opts: opts, readyCh: make(chan struct{})}
}

// carried keeps each source's last applied snapshot across Corefile reloads. CoreDNS sets the new
// instance up before it shuts the old one down; without this, a control plane's table would vanish at
// every reload until its next push, and for good while the control plane is down. This is the only
// state that outlives a plugin instance.
var carried sync.Map // source.String() -> []table.Entry

// add registers a source with the snapshot it already loaded, or nil when it has none yet, in which
// case it starts from what the same source had before a reload, if anything.
func (s *store) add(src source.Source, initial []table.Entry) {
	if initial == nil {
		if snap, ok := carried.Load(src.String()); ok {
			initial = snap.([]table.Entry)
		}
	}
	s.sources = append(s.sources, src)
	s.snaps = append(s.snaps, initial)
	s.have = append(s.have, initial != nil)
}

// table returns the table being served, nil before any source has published.
func (s *store) table() *table.Table { return s.cur.Load() }

// start builds the first table from what the sources loaded at setup, then runs the sources.
func (s *store) start(server string) {
	s.server = server
	s.mu.Lock()
	s.rebuild()
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for i, src := range s.sources {
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			src.Run(ctx, &sink{store: s, index: i})
		}()
	}
}

// stop ends the sources and waits for them, so that a reload leaves nothing running.
func (s *store) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.done.Wait()
}

// rebuild merges every snapshot into a new table and swaps it in. The caller holds mu.
func (s *store) rebuild() {
	var snaps [][]table.Entry
	ready := true
	for i, have := range s.have {
		if have {
			snaps = append(snaps, s.snaps[i])
		}
		ready = ready && have
	}
	if len(snaps) == 0 {
		return
	}
	t := table.Build(slices.Concat(snaps...), s.opts)
	s.cur.Store(t)
	if ready && !s.ready.Swap(true) {
		close(s.readyCh)
	}
	entriesGauge.WithLabelValues(s.server).Set(float64(t.Len()))
	lastUpdate.WithLabelValues(s.server).Set(float64(time.Now().Unix()))
}

// startupTimeout is the longest time any of the sources wants the server's start to wait for it.
func (s *store) startupTimeout() time.Duration {
	var d time.Duration
	for _, src := range s.sources {
		if w, ok := src.(source.Waited); ok {
			d = max(d, w.StartupTimeout())
		}
	}
	return d
}

// waitReady waits up to d for every source's first table, and reports whether they all came.
func (s *store) waitReady(d time.Duration) bool {
	select {
	case <-s.readyCh:
		return true
	case <-time.After(d):
		return false
	}
}

// sink is the store as one source sees it.
type sink struct {
	store *store
	index int
}

func (k *sink) Publish(entries []table.Entry) {
	s := k.store
	src := s.sources[k.index]
	carried.Store(src.String(), entries)
	s.mu.Lock()
	s.snaps[k.index] = entries
	s.have[k.index] = true
	s.rebuild()
	n := s.table().Len()
	s.mu.Unlock()
	tableUpdates.WithLabelValues(s.server, src.Kind(), "applied").Inc()
	log.Infof("%s: name table updated, %d entries from this source, %d served", src, len(entries), n)
}

func (k *sink) Reject(err error) {
	src := k.store.sources[k.index]
	tableUpdates.WithLabelValues(k.store.server, src.Kind(), "rejected").Inc()
	log.Errorf("%s: update rejected, still serving the last good table: %v", src, err)
}
