package meshdns

import (
	"context"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/gctarget"
	"github.com/meshdns/meshdns/plugin/meshdns/pace"
	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// store turns what the sources deliver into the table being served. Sources publish into it; the
// handler only loads the current table, so a query never waits on a source.
type store struct {
	opts    table.Options
	sources []source.Source
	server  string // metric label, known once the server is set up

	mu sync.Mutex // serialises updates
	// Each source's entries: the last snapshot, or, for a source that sends changes, its entries by
	// canonical host (the snapshot is then nil). A source that gives its entries again on demand
	// (recomputers) has neither once it has published: it is asked.
	snaps       [][]table.Entry
	byHost      []map[string][]table.Entry
	recomputers []source.Recomputer
	// index groups a snapshot by host, made when a change to another source needs it.
	index   []map[string][]table.Entry
	have    []bool
	cur     atomic.Pointer[table.Table]
	ready   atomic.Bool
	readyCh chan struct{} // closed when ready first turns true

	compact *time.Timer // builds whole a while after the last change, ending the overlay's cost
	// A whole build in the background (compactInBackground): while it runs, since collects the hosts
	// changed meanwhile, to fold into the table it makes; base counts the tables built whole, so that
	// one built in the meantime on the caller's goroutine wins over it.
	building bool
	since    map[string]bool
	base     uint64
	stopped  bool // stop was called: no background build starts

	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newStore(opts table.Options) *store {
	return &store{opts: opts, readyCh: make(chan struct{})}
}

// carried keeps, for each source, where its last entries are across Corefile reloads. CoreDNS sets
// the new instance up before it shuts the old one down; without this, a control plane's table would
// vanish at every reload until its next push, and for good while the control plane is down. This is
// the only state that outlives a plugin instance.
var carried sync.Map // source.String() -> carriedRef

// carriedRef is a source's entries in the store that last had them.
type carriedRef struct {
	store *store
	index int
}

// add registers a source with the snapshot it already loaded, or nil when it has none yet, in which
// case it starts from what the same source had before a reload, if anything.
func (s *store) add(src source.Source, initial []table.Entry) {
	if initial == nil {
		if ref, ok := carried.Load(src.String()); ok {
			initial = ref.(carriedRef).entries()
		}
	}
	rc, _ := src.(source.Recomputer)
	s.sources = append(s.sources, src)
	s.recomputers = append(s.recomputers, rc)
	s.snaps = append(s.snaps, initial)
	s.byHost = append(s.byHost, nil)
	s.index = append(s.index, nil)
	s.have = append(s.have, initial != nil)
}

// primed marks the store ready when every source already has a table (a file loaded at setup, or
// a control plane's carried over a reload), before start builds it: on a reload the ready plugin
// starts asking the new instance before the new instance has started.
func (s *store) primed() {
	for _, have := range s.have {
		if !have {
			return
		}
	}
	if !s.ready.Swap(true) {
		close(s.readyCh)
		gctarget.Settle()
	}
}

// entries returns a copy of the entries the referenced store holds for its source.
func (r carriedRef) entries() []table.Entry {
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	if r.store.asks(r.index) {
		return r.store.entriesOf(r.index) // made for this call
	}
	return slices.Clone(r.store.entriesOf(r.index))
}

// asks reports whether source i's entries are asked of it rather than kept: it gives them again, and
// the store holds no snapshot of it (one carried over a reload, until the source's first). The caller
// holds mu.
func (s *store) asks(i int) bool { return s.recomputers[i] != nil && s.snaps[i] == nil }

// entriesOf lists source i's entries. The caller holds mu.
func (s *store) entriesOf(i int) []table.Entry {
	if s.asks(i) {
		return s.recomputers[i].Entries()
	}
	if s.byHost[i] == nil {
		return s.snaps[i]
	}
	// Sized first: this is every entry of a large mesh, which grown by appends would be copied again
	// and again (garbage the collector marks on the serving core), and kept at up to twice its size.
	n := 0
	for _, es := range s.byHost[i] {
		n += len(es)
	}
	if n == 0 {
		return nil // as before: no entries, not an empty list
	}
	out := make([]table.Entry, 0, n)
	var p pace.Pacer // a table's worth of entries: half a millisecond
	for _, es := range s.byHost[i] {
		p.Tick()
		out = append(out, es...)
	}
	return out
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
	// First no more background builds: one started by the compaction timer during Wait would add to
	// done while it is waited on.
	s.mu.Lock()
	s.stopped = true
	if s.compact != nil {
		s.compact.Stop()
	}
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.done.Wait()
}

// compactAfter is how long after the last change the table is built whole, once changes stop.
const compactAfter = 10 * time.Second

// rebuild merges every source's entries into a new table and swaps it in. The caller holds mu.
func (s *store) rebuild() {
	var snaps [][]table.Entry
	ready := true
	for i, have := range s.have {
		if have {
			snaps = append(snaps, s.entriesOf(i))
		}
		ready = ready && have
	}
	if len(snaps) == 0 {
		return
	}
	s.base++
	s.swap(table.Build(concat(snaps), s.opts))
	if ready && !s.ready.Swap(true) {
		close(s.readyCh)
		gctarget.Settle()
	}
}

// swap serves t. The caller holds mu.
func (s *store) swap(t *table.Table) {
	s.cur.Store(t)
	entriesGauge.WithLabelValues(s.server).Set(float64(t.Len()))
	lastUpdate.WithLabelValues(s.server).Set(float64(time.Now().Unix()))
}

// maxPending is how many changed hosts a table takes as an overlay (table.Update) before the next
// change builds it whole: a tenth of the table, and at least a few hundred.
func maxPending(n int) int { return max(512, n/10) }

// change applies source i's entries for some hosts: each host's entries from every source are merged
// again and the table updated. The caller holds mu.
func (s *store) change(i int, hosts map[string][]table.Entry) {
	asked := s.recomputers[i] != nil
	if asked {
		s.snaps[i] = nil // a carried snapshot: the source has its own entries now
	} else if s.byHost[i] == nil {
		s.byHost[i] = table.GroupByHost(s.snaps[i])
		s.snaps[i] = nil
	}
	changed := make([]string, 0, len(hosts))
	given := make(map[string][]table.Entry, len(hosts)) // by canonical host
	var p pace.Pacer
	for h, es := range hosts {
		p.Tick()
		ch := table.CanonicalHost(h)
		changed = append(changed, ch)
		given[ch] = es
		if asked {
			continue
		}
		if len(es) == 0 {
			delete(s.byHost[i], ch)
		} else {
			s.byHost[i][ch] = es
		}
	}
	cur := s.cur.Load()
	if cur == nil || !s.have[i] {
		s.rebuild()
		return
	}
	if s.building {
		for _, ch := range changed {
			s.since[ch] = true
		}
	}
	changes := s.merged(changed, i, given)
	if cur.NeedsBuild(changes) {
		s.rebuild()
		return
	}
	// Past what an overlay takes, the table is built whole in the background, and this change, like
	// those until that build is in, goes on the overlay: the push is served now, not after a build
	// that takes a second for 100k names.
	if cur.Pending()+len(hosts) > maxPending(cur.Len()) {
		s.compactInBackground(false)
	}
	pace.Check()
	s.swap(cur.Update(changes))
	if s.compact == nil {
		s.compact = time.AfterFunc(compactAfter, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if t := s.cur.Load(); t != nil && t.Pending() > 0 {
				s.compactInBackground(true)
			}
		})
	} else {
		s.compact.Reset(compactAfter)
	}
}

// concat is the sources' entries as one list, without a copy when there is one source: Build only
// reads it.
func concat(snaps [][]table.Entry) []table.Entry {
	if len(snaps) == 1 {
		return snaps[0]
	}
	return slices.Concat(snaps...)
}

// merged is, for each canonical host, its entries from every source merged: every variant of the
// host, none when it is gone. Source own's are those given, by canonical host (own -1: none given).
// The caller holds mu.
func (s *store) merged(hosts []string, own int, given map[string][]table.Entry) map[string][]table.Entry {
	changes := make(map[string][]table.Entry, len(hosts))
	var p pace.Pacer
	for _, ch := range hosts {
		p.Tick()
		var all []table.Entry
		for j := range s.sources {
			switch {
			case j == own:
				all = append(all, given[ch]...)
			case s.have[j]:
				all = append(all, s.hostEntries(j, ch)...)
			}
		}
		changes[ch] = table.Merge(all)
	}
	return changes
}

// compactInBackground builds the table whole from every source's entries, off the caller's
// goroutine, and serves it with the hosts changed meanwhile folded in, unless a table was built whole
// in the meantime. One build runs at a time. Once changes have settled (settled), the memory the
// overlays and the old table held goes back to the system: RSS is what a node-local resolver on
// every node is charged for, and the runtime would otherwise keep it for the next change. The caller
// holds mu.
func (s *store) compactInBackground(settled bool) {
	if s.building || s.stopped {
		return
	}
	// The sources that are asked for their entries are asked on the build's goroutine, not under mu:
	// what they give may be newer than base, and the hosts changed since are folded in all the same.
	var snaps [][]table.Entry
	var asked []source.Recomputer
	for i, have := range s.have {
		switch {
		case !have:
		case s.asks(i):
			asked = append(asked, s.recomputers[i])
		default:
			snaps = append(snaps, s.entriesOf(i))
		}
	}
	base := s.base
	s.building, s.since = true, map[string]bool{}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		if settled {
			// The burst that settled (a relist, a rollout) left its garbage uncollected: collected
			// first, its memory takes the build's, which would otherwise land on top of it.
			runtime.GC()
		}
		for _, rc := range asked {
			snaps = append(snaps, rc.Entries())
		}
		entries := concat(snaps)
		snaps = nil
		t := table.Build(entries, s.opts)
		entries = nil
		if s.serveBuilt(t, base) && settled {
			debug.FreeOSMemory()
		}
	}()
}

// serveBuilt serves t, built whole in the background from the entries of base, with the hosts
// changed meanwhile folded in, unless a table was built whole in the meantime; it reports whether t
// (or a build in its place) is served.
func (s *store) serveBuilt(t *table.Table, base uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	since := s.since
	s.building, s.since = false, nil
	if s.base != base {
		return false // built whole meanwhile, from newer entries
	}
	s.base++
	if len(since) == 0 {
		s.swap(t)
		return true
	}
	changes := s.merged(slices.Collect(maps.Keys(since)), -1, nil)
	if t.NeedsBuild(changes) {
		s.rebuild()
		return true
	}
	s.swap(t.Update(changes))
	return true
}

// publishChanges folds a snapshot of source i into the table being served as changes: only the
// hosts whose entries differ from the source's last ones, so that a push moving a few addresses in a
// large table costs those hosts, not a whole build (and none when nothing changed); change builds
// whole past what an overlay takes. It reports false, having changed nothing, when the table must be
// built from snapshots: none served yet, or the source's first. The caller holds mu.
func (s *store) publishChanges(i int, entries []table.Entry) bool {
	cur := s.cur.Load()
	if cur == nil || !s.have[i] {
		return false
	}
	old := s.byHost[i]
	if old == nil {
		if old = s.index[i]; old == nil {
			old = table.GroupByHost(s.snaps[i])
		}
	}
	changes := table.Changes(old, table.GroupByHost(entries))
	s.snaps[i], s.byHost[i], s.index[i] = nil, old, nil // change folds the changes into old
	if len(changes) > 0 {
		s.change(i, changes)
	}
	return true
}

// hostEntries returns source j's entries for canonical host h. The caller holds mu.
func (s *store) hostEntries(j int, h string) []table.Entry {
	if s.asks(j) {
		return s.recomputers[j].HostEntries(h)
	}
	if s.byHost[j] != nil {
		return s.byHost[j][h]
	}
	if s.index[j] == nil {
		s.index[j] = table.GroupByHost(s.snaps[j])
	}
	return s.index[j][h]
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
	s.mu.Lock()
	// A source that is asked for its entries is built whole from what it gives, which is not kept:
	// there is nothing to tell its changes from.
	if s.recomputers[k.index] != nil || !s.publishChanges(k.index, entries) {
		s.snaps[k.index], s.byHost[k.index], s.index[k.index] = entries, nil, nil
		s.have[k.index] = true
		s.rebuild()
		if s.recomputers[k.index] != nil {
			s.snaps[k.index] = nil
		}
	}
	n := s.table().Len()
	s.mu.Unlock()
	carried.Store(src.String(), carriedRef{store: s, index: k.index})
	tableUpdates.WithLabelValues(s.server, src.Kind(), "applied").Inc()
	log.Infof("%s: name table updated, %d entries from this source, %d served", src, len(entries), n)
}

func (k *sink) Change(hosts map[string][]table.Entry) {
	s := k.store
	src := s.sources[k.index]
	s.mu.Lock()
	s.change(k.index, hosts)
	n := s.table().Len()
	s.mu.Unlock()
	carried.Store(src.String(), carriedRef{store: s, index: k.index})
	tableUpdates.WithLabelValues(s.server, src.Kind(), "applied").Inc()
	log.Debugf("%s: name table updated, %d hosts changed, %d served", src, len(hosts), n)
}

func (k *sink) Reject(err error) {
	src := k.store.sources[k.index]
	tableUpdates.WithLabelValues(k.store.server, src.Kind(), "rejected").Inc()
	log.Errorf("%s: update rejected, still serving the last good table: %v", src, err)
}
