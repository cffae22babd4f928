package nds

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeClients is a source.ClientNamespaces the test sets.
type fakeClients struct {
	mu         sync.Mutex
	namespaces []string
	synced     bool
	changed    chan struct{}
}

func newFakeClients() *fakeClients { return &fakeClients{changed: make(chan struct{})} }

func (f *fakeClients) ClientNamespaces() ([]string, bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.namespaces, f.synced, f.changed
}

func (f *fakeClients) set(namespaces ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.namespaces, f.synced = namespaces, true
	close(f.changed)
	f.changed = make(chan struct{})
}

// changeSink records snapshots and changes, as the store takes them.
type changeSink struct {
	*sink
	changes chan map[string][]table.Entry
}

func newChangeSink() *changeSink {
	return &changeSink{sink: newSink(), changes: make(chan map[string][]table.Entry, 16)}
}

func (k *changeSink) Change(hosts map[string][]table.Entry) { k.changes <- hosts }

func (k *changeSink) nextChange(t *testing.T) map[string][]table.Entry {
	t.Helper()
	select {
	case c := <-k.changes:
		return c
	case e := <-k.published:
		t.Fatalf("published %v, want changes", e)
	case err := <-k.rejected:
		t.Fatalf("rejected: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10s")
	}
	return nil
}

func svc(name, ns, ip string) table.Entry {
	return table.Entry{Host: name + "." + ns + ".svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr(ip)},
		Registry: "Kubernetes", ShortName: name, Namespace: ns}
}

var (
	shared = svc("kubernetes", "default", "10.96.0.1")
	onlyA  = svc("web", "a", "10.96.1.1")
	onlyB  = svc("db", "b", "10.96.2.1")
)

// nsOf is the namespace of a sidecar node id, sidecar~IP~ID.NS~NS.svc.DOMAIN.
func nsOf(id string) string {
	parts := strings.Split(id, "~")
	ns, _, _ := strings.Cut(parts[3], ".")
	return ns
}

func sotw(version string, entries ...table.Entry) *discovery.DiscoveryResponse {
	return &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: version, Nonce: version,
		Resources: []*anypb.Any{nameTable(entries...)}}
}

// visibility lists "host=ns,ns" for each entry, to compare what was published.
func visibility(entries []table.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s=%s", strings.Split(e.Host, ".")[0], strings.Join(e.VisibleTo, ",")))
	}
	slices.Sort(out)
	return out
}

func perNamespaceSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	cfg.Cluster = DefaultCluster
	src, err := New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	src.retry = xds.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	return src
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
	}
}

func TestPerNamespaceClients(t *testing.T) {
	srv := ndstest.New(t, nil)
	var mu sync.Mutex
	nodes := map[string]*core.Node{}
	srv.OnNode = func(n *core.Node) any {
		mu.Lock()
		nodes[nsOf(n.Id)] = n
		mu.Unlock()
		switch nsOf(n.Id) {
		case "a":
			return sotw("1", shared, onlyA)
		case "b":
			return sotw("1", shared, onlyB)
		}
		return sotw("1", shared)
	}
	clients := newFakeClients()
	src := perNamespaceSource(t, Config{Address: srv.Addr, ClientNamespaces: true, Grace: 200 * time.Millisecond,
		Metadata: map[string]string{"LABELS": "x"}})
	src.UseClientNamespaces(clients)
	k := newChangeSink()
	runSource(t, src, k)

	// Nothing until the clients source has synced: readiness waits for it.
	time.Sleep(100 * time.Millisecond)
	if n := srv.OpenStreams(); n != 0 {
		t.Fatalf("%d streams before the clients synced", n)
	}
	clients.set("a", "b")
	got := k.next(t)
	if want := []string{"db=b", "kubernetes=a,b", "web=a"}; !slices.Equal(visibility(got), want) {
		t.Errorf("first snapshot %v, want %v", visibility(got), want)
	}
	mu.Lock()
	for _, ns := range []string{"a", "b"} {
		n := nodes[ns]
		if n == nil {
			t.Fatalf("no subscription for %s", ns)
		}
		if !regexp.MustCompile(`^sidecar~[0-9a-f.:]+~[^.~]+\.` + ns + `~` + ns + `\.svc\.cluster\.local$`).MatchString(n.Id) {
			t.Errorf("node id %q", n.Id)
		}
		md := n.Metadata.AsMap()
		for key, want := range map[string]string{"NAMESPACE": ns, "DNS_CAPTURE": "true", "DNS_AUTO_ALLOCATE": "true", "CLUSTER_ID": "Kubernetes", "LABELS": "x"} {
			if md[key] != want {
				t.Errorf("%s: metadata %s = %v, want %q", ns, key, md[key], want)
			}
		}
	}
	mu.Unlock()
	if n := testutil.ToFloat64(subscriptionsGauge.WithLabelValues(srv.Addr)); n != 2 {
		t.Errorf("subscriptions gauge %v", n)
	}

	// A push of one namespace changes only what it changed.
	movedA := onlyA
	movedA.Addrs = []netip.Addr{netip.MustParseAddr("10.96.1.2")}
	ids := srv.Nodes()
	if len(ids) != 2 || !srv.PushTo(ids[0], sotw("2", shared, movedA)) {
		t.Fatalf("streams %v", ids)
	}
	c := k.nextChange(t)
	if len(c) != 1 || len(c["web.a.svc.cluster.local."]) != 1 || c["web.a.svc.cluster.local."][0].Addrs[0] != movedA.Addrs[0] {
		t.Errorf("change %v", c)
	}
	// The same table again (istiod pushes every namespace on changes only some see): nothing to do.
	srv.PushTo(ids[0], sotw("3", shared, movedA))
	srv.PushTo(ids[1], sotw("2", shared, onlyB))
	select {
	case c := <-k.changes:
		t.Errorf("pushes of the same tables changed %v", c)
	case <-time.After(200 * time.Millisecond):
	}

	// A namespace gone and back within the grace period keeps its stream.
	clients.set("a")
	clients.set("a", "b")
	time.Sleep(400 * time.Millisecond)
	if got := srv.Nodes(); !slices.Equal(got, ids) {
		t.Errorf("streams after a flap: %v, want %v", got, ids)
	}
	select {
	case c := <-k.changes:
		t.Errorf("a flap changed %v", c)
	default:
	}

	// Gone for longer: closed, its entries taken out.
	clients.set("a")
	c = k.nextChange(t)
	if len(c) != 2 || len(c["db.b.svc.cluster.local."]) != 0 || !slices.Equal(visibility(c["kubernetes.default.svc.cluster.local."]), []string{"kubernetes=a"}) {
		t.Errorf("change on closing b: %v", c)
	}
	waitFor(t, "b's stream closed", func() bool { return len(srv.Nodes()) == 1 })
	if n := testutil.ToFloat64(subscriptionsGauge.WithLabelValues(srv.Addr)); n != 1 {
		t.Errorf("subscriptions gauge %v", n)
	}

	// A new namespace: its entries come with its first table.
	clients.set("a", "c")
	c = k.nextChange(t)
	if len(c) != 1 || !slices.Equal(visibility(c["kubernetes.default.svc.cluster.local."]), []string{"kubernetes=a,c"}) {
		t.Errorf("change on opening c: %v", c)
	}
}

func TestPerNamespaceReadiness(t *testing.T) {
	t.Run("no namespaces", func(t *testing.T) {
		srv := ndstest.New(t, nil)
		clients := newFakeClients()
		src := perNamespaceSource(t, Config{Address: srv.Addr, ClientNamespaces: true})
		src.UseClientNamespaces(clients)
		k := newSink()
		runSource(t, src, k)
		clients.set()
		if got := k.next(t); got == nil || len(got) != 0 {
			t.Errorf("first snapshot %v, want an empty one", got)
		}
	})
	t.Run("every namespace present at the start", func(t *testing.T) {
		srv := ndstest.New(t, nil)
		release := make(chan struct{})
		srv.OnNode = func(n *core.Node) any {
			if nsOf(n.Id) == "slow" {
				<-release
			}
			return sotw("1", svc("x", nsOf(n.Id), "10.96.3.1"))
		}
		// Fixed namespaces, and the block's own: no clients source.
		src := perNamespaceSource(t, Config{Address: srv.Addr, Namespaces: []string{"fast", "slow"}, Namespace: "home"})
		k := newSink()
		runSource(t, src, k)
		select {
		case got := <-k.published:
			t.Fatalf("published %v before slow's first table", visibility(got))
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		if got, want := visibility(k.next(t)), []string{"x=fast", "x=home", "x=slow"}; !slices.Equal(got, want) {
			t.Errorf("first snapshot %v, want %v", got, want)
		}
	})
	t.Run("a failing namespace keeps its table", func(t *testing.T) {
		srv := ndstest.New(t, nil)
		srv.OnNode = func(n *core.Node) any { return sotw("1", svc("x", nsOf(n.Id), "10.96.3.1")) }
		src := perNamespaceSource(t, Config{Address: srv.Addr, Namespaces: []string{"a", "b"}})
		k := newChangeSink()
		runSource(t, src, k)
		k.next(t)
		ids := srv.Nodes()
		srv.PushTo(ids[0], &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "2", Nonce: "2",
			Resources: []*anypb.Any{{TypeUrl: TypeURL, Value: []byte("not a table")}}})
		if err := k.nextReject(t); err == nil {
			t.Fatal("no rejection")
		}
		select {
		case c := <-k.changes:
			t.Errorf("a rejected push changed %v", c)
		case <-time.After(200 * time.Millisecond):
		}
	})
}

func TestPerNamespaceDelta(t *testing.T) {
	srv := ndstest.New(t, nil)
	srv.OnNode = func(n *core.Node) any {
		return &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, SystemVersionInfo: "1", Nonce: "1",
			Resources: []*discovery.Resource{{Name: "t", Version: "1", Resource: nameTable(svc("x", nsOf(n.Id), "10.96.3.1"))}}}
	}
	src := perNamespaceSource(t, Config{Address: srv.Addr, Namespaces: []string{"a", "b"}, Delta: true})
	k := newSink()
	runSource(t, src, k)
	if got, want := visibility(k.next(t)), []string{"x=a", "x=b"}; !slices.Equal(got, want) {
		t.Errorf("first snapshot %v, want %v", got, want)
	}
	// A sink without changes gets whole snapshots.
	ids := srv.Nodes()
	srv.PushTo(ids[1], &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, SystemVersionInfo: "2", Nonce: "2", RemovedResources: []string{"t"}})
	if got, want := visibility(k.next(t)), []string{"x=a"}; !slices.Equal(got, want) {
		t.Errorf("after b's table emptied: %v, want %v", got, want)
	}
}

// fakeTokens makes "NS/SA/AUDIENCE/N" tokens, counting them.
type fakeTokens struct {
	mu   sync.Mutex
	made int
	life time.Duration
}

func (f *fakeTokens) Token(_ context.Context, ns, sa, audience string) (string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.made++
	return fmt.Sprintf("%s/%s/%s/%d", ns, sa, audience, f.made), time.Now().Add(f.life), nil
}

func TestPerNamespaceTokens(t *testing.T) {
	srv := ndstest.New(t, nil)
	srv.OnNode = func(n *core.Node) any { return sotw("1", svc("x", nsOf(n.Id), "10.96.3.1")) }
	src := perNamespaceSource(t, Config{Address: srv.Addr, Namespaces: []string{"a", "b"}, TokenRequest: true, ServiceAccount: "dns"})
	tokens := &fakeTokens{life: time.Hour}
	src.UseTokens(tokens)
	k := newSink()
	runSource(t, src, k)
	k.next(t)
	got := srv.Tokens()
	slices.Sort(got)
	if want := []string{"[Bearer a/dns/istio-ca/1]", "[Bearer b/dns/istio-ca/2]"}; len(got) != 2 ||
		!strings.HasPrefix(got[0], "[Bearer a/dns/istio-ca/") || !strings.HasPrefix(got[1], "[Bearer b/dns/istio-ca/") {
		t.Errorf("tokens %v, want one of each namespace's, as %v", got, want)
	}

	// A token is made again past half its life, not for every stream.
	tok := &namespaceToken{tokens: tokens, namespace: "c", serviceAccount: "dns"}
	for range 3 {
		if _, err := tok.GetRequestMetadata(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if tokens.made != 3 {
		t.Errorf("%d tokens made, want one more for three streams", tokens.made)
	}
	tokens.life = time.Millisecond
	tok.token = ""
	tok.GetRequestMetadata(context.Background())
	time.Sleep(5 * time.Millisecond)
	md, _ := tok.GetRequestMetadata(context.Background())
	if tokens.made != 5 || md["authorization"] != "Bearer c/dns/istio-ca/5" {
		t.Errorf("expired token: %d made, sent %v", tokens.made, md)
	}
}
