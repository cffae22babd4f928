package meshdns

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

// waitBuiltWhole waits for st's background build, which leaves nothing pending but what changed
// after it began.
func waitBuiltWhole(t *testing.T, st *store) {
	t.Helper()
	for range 1000 {
		st.mu.Lock()
		building := st.building
		st.mu.Unlock()
		if !building {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the background build did not end within 10s")
}

// idleSource is a source that never runs: the test drives its sink.
type idleSource struct{ name string }

func (s idleSource) Kind() string                           { return "test" }
func (s idleSource) String() string                         { return "test " + s.name }
func (s idleSource) Run(ctx context.Context, _ source.Sink) { <-ctx.Done() }

func lookupAddrs(t *testing.T, st *store, host string) []string {
	t.Helper()
	tbl := st.table()
	m := tbl.Lookup(host, table.NewView("", nil, "cluster.local"))
	if !m.Found() {
		return nil
	}
	rrs, _ := tbl.Answer(m, host, 1)
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// wantAddrs checks that st answers host's A question with addrs, in any order.
func wantAddrs(t *testing.T, st *store, host string, addrs ...string) {
	t.Helper()
	var w []string
	for _, a := range addrs {
		w = append(w, fmt.Sprintf("%s\t30\tIN\tA\t%s", host, a))
	}
	slices.Sort(w)
	if got := lookupAddrs(t, st, host); !slices.Equal(got, w) {
		t.Errorf("%s: %v, want %v", host, got, w)
	}
}

// TestStoreChanges checks that changes from one source are merged with what other sources have for
// the same host, by the same rules as whole snapshots, both as overlays and once rebuilt whole.
func TestStoreChanges(t *testing.T) {
	st := newStore(table.Options{ClusterDomain: "cluster.local", TTL: 30})
	files := idleSource{"snapshots"}
	kube := idleSource{"changes"}
	st.add(files, []table.Entry{
		{Host: "web.ns.svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr("240.0.0.1")}, Registry: table.RegistryExternal},
		{Host: "api.example.com", Addrs: []netip.Addr{netip.MustParseAddr("240.0.0.2")}, Registry: table.RegistryExternal},
	})
	st.add(kube, nil)
	st.start("test")
	defer st.stop()
	fileSink, kubeSink := &sink{store: st, index: 0}, &sink{store: st, index: 1}
	if st.ready.Load() {
		t.Fatal("ready before the second source published")
	}
	kubeSink.Publish([]table.Entry{{Host: "db.ns.svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}, Registry: table.RegistryKubernetes}})
	if !st.ready.Load() {
		t.Fatal("not ready after both published")
	}
	want := func(host string, addrs ...string) {
		t.Helper()
		wantAddrs(t, st, host, addrs...)
	}
	web := table.Entry{Host: "web.ns.svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Registry: table.RegistryKubernetes}
	kubeSink.Change(map[string][]table.Entry{"web.ns.svc.cluster.local": {web}})
	want("web.ns.svc.cluster.local.", "10.0.0.1") // the Service beats the other source's entry
	if st.table().Pending() != 1 {
		t.Errorf("pending %d: a change is an overlay", st.table().Pending())
	}
	kubeSink.Change(map[string][]table.Entry{"web.ns.svc.cluster.local": nil})
	want("web.ns.svc.cluster.local.", "240.0.0.1") // gone from this source: the other's again
	want("db.ns.svc.cluster.local.", "10.0.0.9")
	ext := table.Entry{Host: "API.example.com", Addrs: []netip.Addr{netip.MustParseAddr("240.0.0.3")}, Registry: table.RegistryExternal}
	kubeSink.Change(map[string][]table.Entry{"API.example.com": {ext}})
	want("api.example.com.", "240.0.0.2", "240.0.0.3") // equal rank: the union
	// The other source publishes a snapshot: only the hosts it changed are folded in (two gone, one
	// new), merged with this source's changes.
	pending := st.table().Pending()
	other := []table.Entry{{Host: "other.example.com", Addrs: []netip.Addr{netip.MustParseAddr("240.0.0.4")}, Registry: table.RegistryExternal}}
	fileSink.Publish(other)
	if got := st.table().Pending(); got != pending+1 { // web and api were in the overlay already
		t.Errorf("pending %d after a snapshot changing 3 hosts, want %d: folded in, not built whole", got, pending+1)
	}
	want("api.example.com.", "240.0.0.3")
	want("db.ns.svc.cluster.local.", "10.0.0.9")
	want("web.ns.svc.cluster.local.")
	want("other.example.com.", "240.0.0.4")
	// The same snapshot again changes nothing: the table served stays.
	served := st.table()
	fileSink.Publish(slices.Clone(other))
	if st.table() != served {
		t.Error("an unchanged snapshot made a new table")
	}
	// Many changes: past maxPending they are served at once from the overlay, and the table is built
	// whole in the background, with what changed meanwhile folded in.
	many := map[string][]table.Entry{}
	for i := range maxPending(0) + 1 {
		h := fmt.Sprintf("s%d.ns.svc.cluster.local", i)
		many[h] = []table.Entry{{Host: h, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}, Registry: table.RegistryKubernetes}}
	}
	kubeSink.Change(many)
	if st.table().Len() != 3+len(many) {
		t.Errorf("%d entries after %d changes, want %d", st.table().Len(), len(many), 3+len(many))
	}
	want("s7.ns.svc.cluster.local.", "10.1.0.7")
	kubeSink.Change(map[string][]table.Entry{"s8.ns.svc.cluster.local": nil}) // while it builds, or after
	waitBuiltWhole(t, st)
	want("s7.ns.svc.cluster.local.", "10.1.0.7")
	want("s8.ns.svc.cluster.local.")
	delete(many, "s8.ns.svc.cluster.local")
	// A reload carries this source's current entries, changes included.
	next := newStore(st.opts)
	next.add(kube, nil)
	if got := len(next.snaps[0]); got != 2+len(many) {
		t.Errorf("carried %d entries, want %d", got, 2+len(many))
	}
}

// TestStoreChangesVariants: a change naming a host's variants, from two sources, reaches the overlay
// whole, and each client gets its variant there as after a rebuild.
func TestStoreChangesVariants(t *testing.T) {
	st := newStore(table.Options{ClusterDomain: "cluster.local", TTL: 30})
	mesh, kube := idleSource{"mesh"}, idleSource{"kube"}
	st.add(mesh, nil)
	st.add(kube, nil)
	st.start("test")
	defer st.stop()
	meshSink, kubeSink := &sink{store: st, index: 0}, &sink{store: st, index: 1}
	meshSink.Publish([]table.Entry{{Host: "x.example.com", Addrs: []netip.Addr{netip.MustParseAddr("240.0.0.9")}, Registry: table.RegistryExternal}})
	kubeSink.Publish(nil)
	entry := func(addr string, to ...string) table.Entry {
		return table.Entry{Host: "api.example.com", Addrs: []netip.Addr{netip.MustParseAddr(addr)}, Registry: table.RegistryExternal, VisibleTo: to}
	}
	// The mesh source's copies for a and b fold into one; kube's entry for everyone else follows.
	meshSink.Publish([]table.Entry{{Host: "x.example.com", Addrs: []netip.Addr{netip.MustParseAddr("240.0.0.9")}, Registry: table.RegistryExternal},
		entry("240.0.0.1", "a"), entry("240.0.0.1", "b")})
	kubeSink.Change(map[string][]table.Entry{"api.example.com": {entry("240.0.0.2")}})
	check := func(when string) {
		t.Helper()
		tbl := st.table()
		for ns, want := range map[string]string{"a": "240.0.0.1", "b": "240.0.0.1", "c": "240.0.0.2"} {
			m := tbl.Lookup("api.example.com.", table.NewView(ns, nil, "cluster.local"))
			if rrs, _ := tbl.Answer(m, "api.example.com.", dns.TypeA); len(rrs) != 1 || rrs[0].(*dns.A).A.String() != want {
				t.Errorf("%s, from %s: %v, want %s", when, ns, rrs, want)
			}
		}
		if tbl.Len() != 2 {
			t.Errorf("%s: Len %d, want 2 hosts", when, tbl.Len())
		}
	}
	if st.table().Pending() == 0 {
		t.Fatal("the changes were not folded into an overlay")
	}
	check("overlay")
	st.mu.Lock()
	st.rebuild()
	st.mu.Unlock()
	check("rebuilt")
}

// Equal must compare every field of Entry: a field it forgets would make a changed snapshot look
// unchanged, and the table would keep the old entry.
func TestEntryEqualComparesEveryField(t *testing.T) {
	base := table.Entry{Host: "a.example.com", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	typ := reflect.TypeFor[table.Entry]()
	for i := range typ.NumField() {
		changed := base
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", typ.Field(i).Name, f.Kind())
		}
		if base.Equal(&changed) {
			t.Errorf("Equal ignores %s", typ.Field(i).Name)
		}
	}
	same := base
	same.Addrs = slices.Clone(base.Addrs)
	if !base.Equal(&same) {
		t.Error("equal entries are not Equal")
	}
}

// recomputingSource gives its entries again on demand, as the kubernetes source does from its
// informers: the test sets them, then has the source publish or change them.
type recomputingSource struct {
	idleSource
	mu      sync.Mutex
	entries map[string][]table.Entry // by canonical host
	asked   int                      // calls to HostEntries and Entries
}

func (r *recomputingSource) set(host string, addrs ...string) []table.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var es []table.Entry
	if len(addrs) > 0 {
		e := table.Entry{Host: host, Registry: table.RegistryKubernetes}
		for _, a := range addrs {
			e.Addrs = append(e.Addrs, netip.MustParseAddr(a))
		}
		es = []table.Entry{e}
	}
	if r.entries == nil {
		r.entries = map[string][]table.Entry{}
	}
	r.entries[table.CanonicalHost(host)] = es
	return es
}

func (r *recomputingSource) HostEntries(h string) []table.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked++
	return r.entries[h]
}

func (r *recomputingSource) Entries() []table.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked++
	var out []table.Entry
	for _, h := range slices.Sorted(maps.Keys(r.entries)) {
		out = append(out, r.entries[h]...)
	}
	return out
}

// TestStoreAsksRecomputers: the store keeps no copy of a recomputing source's entries, and asks it
// when another source changes a host it names, for a whole build, and across a reload.
func TestStoreAsksRecomputers(t *testing.T) {
	st := newStore(table.Options{ClusterDomain: "cluster.local", TTL: 30})
	files := idleSource{"snapshots"}
	kube := &recomputingSource{idleSource: idleSource{"recomputed"}}
	st.add(files, nil)
	st.add(kube, nil)
	st.start("test")
	defer st.stop()
	fileSink, kubeSink := &sink{store: st, index: 0}, &sink{store: st, index: 1}
	want := func(host string, addrs ...string) {
		t.Helper()
		wantAddrs(t, st, host, addrs...)
	}
	kept := func(when string) {
		t.Helper()
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.snaps[1] != nil || st.byHost[1] != nil || st.index[1] != nil {
			t.Errorf("%s: the store kept the recomputing source's entries", when)
		}
	}
	ext := func(host, addr string) table.Entry {
		return table.Entry{Host: host, Addrs: []netip.Addr{netip.MustParseAddr(addr)}, Registry: table.RegistryExternal}
	}
	fileSink.Publish([]table.Entry{ext("web.ns.svc.cluster.local", "240.0.0.1")})
	db := kube.set("db.ns.svc.cluster.local", "10.0.0.9")
	kubeSink.Publish(slices.Clone(db))
	want("db.ns.svc.cluster.local.", "10.0.0.9")
	kept("after its snapshot")

	web := kube.set("web.ns.svc.cluster.local", "10.0.0.1")
	kubeSink.Change(map[string][]table.Entry{"web.ns.svc.cluster.local": web})
	want("web.ns.svc.cluster.local.", "10.0.0.1") // the Service beats the other source's entry
	kept("after a change")

	// The other source changes web: the recomputing source's entries for it are asked, and they may
	// be newer than its last change (which follows).
	before := kube.asked
	kube.set("web.ns.svc.cluster.local", "10.0.0.2")
	fileSink.Publish([]table.Entry{ext("web.ns.svc.cluster.local", "240.0.0.5")})
	if kube.asked == before {
		t.Error("the store merged web without asking the recomputing source")
	}
	want("web.ns.svc.cluster.local.", "10.0.0.2")
	kubeSink.Change(map[string][]table.Entry{"web.ns.svc.cluster.local": nil})
	kube.set("web.ns.svc.cluster.local")
	want("web.ns.svc.cluster.local.", "240.0.0.5") // gone from it: the other's again

	// Built whole, in the background and at once: from what it gives.
	st.mu.Lock()
	st.compactInBackground(true)
	st.mu.Unlock()
	waitBuiltWhole(t, st)
	want("db.ns.svc.cluster.local.", "10.0.0.9")
	want("web.ns.svc.cluster.local.", "240.0.0.5")
	if st.table().Pending() != 0 {
		t.Errorf("pending %d after a whole build", st.table().Pending())
	}
	kept("after a whole build")

	// A reload carries what it gives now.
	next := newStore(st.opts)
	next.add(kube, nil)
	if got := next.snaps[0]; len(got) != 1 || got[0].Host != "db.ns.svc.cluster.local" {
		t.Errorf("carried %v, want db alone", got)
	}
}
