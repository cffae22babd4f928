package ambient

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/anypb"
)

func init() { clog.Discard() }

// changeSink records what the source hands the store: snapshots and changes.
type changeSink struct {
	published chan []table.Entry
	changed   chan map[string][]table.Entry
	rejected  chan error
}

func newChangeSink() *changeSink {
	return &changeSink{published: make(chan []table.Entry, 16), changed: make(chan map[string][]table.Entry, 16), rejected: make(chan error, 16)}
}

func (k *changeSink) Publish(e []table.Entry)                { k.published <- e }
func (k *changeSink) Change(h map[string][]table.Entry)      { k.changed <- h }
func (k *changeSink) Reject(err error)                       { k.rejected <- err }
func next[T any](t *testing.T, ch chan T, what string) (v T) { t.Helper(); return within(t, ch, what) }

func within[T any](t *testing.T, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
	var zero T
	return zero
}

func address(name, version string, b []byte) *discovery.Resource {
	return &discovery.Resource{Name: name, Version: version, Resource: &anypb.Any{TypeUrl: TypeURL, Value: b}}
}

func startSource(t *testing.T, cfg *Config, sink *changeSink) *Source {
	t.Helper()
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src.client.Retry = xds.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx, sink); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return src
}

func TestSource(t *testing.T) {
	srv := ndstest.New(t, nil)
	k := newChangeSink()
	src := startSource(t, &Config{Dial: xds.Dial{Address: srv.Addr}, Cluster: DefaultCluster, Namespace: "mesh", Metadata: map[string]string{"X": "y"}}, k)

	first := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if !regexp.MustCompile(`^ztunnel~[0-9a-f.:]+~[^.~]+\.mesh~mesh\.svc\.cluster\.local$`).MatchString(first.Node.GetId()) {
		t.Errorf("node id %q", first.Node.GetId())
	}
	md := first.Node.GetMetadata().AsMap()
	for _, key := range []string{"NAMESPACE", "CLUSTER_ID", "NODE_NAME", "X"} {
		if md[key] == nil || md[key] == "" {
			t.Errorf("metadata %s missing: %v", key, md)
		}
	}
	if first.TypeUrl != TypeURL || len(first.ResourceNamesSubscribe) != 1 || first.ResourceNamesSubscribe[0] != "*" {
		t.Errorf("first request: %v", first)
	}

	// The first push is a snapshot; a bad resource in it is NACKed by name, the rest applied.
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "1", SystemVersionInfo: "p1", Resources: []*discovery.Resource{
		address("default/reviews.default.svc.cluster.local", "1", EncodeService(reviewsSvc)),
		address("default/db.default.svc.cluster.local", "1", EncodeService(dbSvc)),
		address(db0.UID, "1", EncodeWorkload(db0)),
		address("default/broken.example", "1", EncodeService(&Service{Namespace: "default", Hostname: "broken..example"})),
	}}
	snap := next(t, k.published, "snapshot")
	if len(snap) != 3 { // reviews, db, db-0.db
		t.Errorf("first snapshot %+v", snap)
	}
	err := next(t, k.rejected, "rejection")
	nack := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if nack.ErrorDetail.GetMessage() != err.Error() || !strings.Contains(err.Error(), `resource "default/broken.example"`) || !strings.Contains(err.Error(), `delta push "p1"`) {
		t.Errorf("NACK %v for %v", nack.ErrorDetail, err)
	}
	if ns, ok := src.NamespaceOf(netip.MustParseAddr("10.244.0.10")); !ok || ns != "default" {
		t.Errorf("client namespace of db-0: %q %v", ns, ok)
	}

	// Then changes: only the hosts touched.
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "2", Resources: []*discovery.Resource{address(db1.UID, "1", EncodeWorkload(db1))}}
	ch := next(t, k.changed, "change")
	if len(ch) != 2 || len(ch["db.default.svc.cluster.local."]) != 1 || len(ch["db.default.svc.cluster.local."][0].Addrs) != 2 {
		t.Errorf("a pod added: %+v", ch)
	}
	if ack := srv.Request().(*discovery.DeltaDiscoveryRequest); ack.ErrorDetail != nil {
		t.Errorf("ACK %v", ack)
	}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "3", RemovedResources: []string{db0.UID, "default/reviews.default.svc.cluster.local"}}
	ch = next(t, k.changed, "change")
	if len(ch) != 3 || ch["reviews.default.svc.cluster.local."] != nil || ch["db-0.db.default.svc.cluster.local."] != nil {
		t.Errorf("removals: %+v", ch)
	}
	srv.Request()
	if _, ok := src.NamespaceOf(netip.MustParseAddr("10.244.0.10")); ok {
		t.Errorf("a removed workload's address still has a namespace")
	}
	if got := testutil.ToFloat64(resourcesGauge.WithLabelValues(srv.Addr, "workload")); got != 1 {
		t.Errorf("workloads gauge %v", got)
	}

	// A new stream names what is held; what istiod sends on it are changes to that.
	srv.Stop()
	srv.Restart()
	again := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if len(again.InitialResourceVersions) != 2 || again.InitialResourceVersions[db1.UID] != "1" {
		t.Errorf("initial versions %v", again.InitialResourceVersions)
	}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "4", RemovedResources: []string{db1.UID}}
	if ch := next(t, k.changed, "change after reconnecting"); len(ch) != 2 || len(ch["db.default.svc.cluster.local."]) != 1 {
		t.Errorf("after reconnecting: %+v", ch)
	}
}

// TestReloadCarriesTheWorkloads: the next instance of the same block (a Corefile reload) knows the
// clients and tells istiod what it holds before istiod sends anything.
func TestReloadCarriesTheWorkloads(t *testing.T) {
	srv := ndstest.New(t, nil)
	cfg := Config{Dial: xds.Dial{Address: srv.Addr}, Cluster: DefaultCluster, Network: "reload-test"}
	k := newChangeSink()
	first := cfg
	startSource(t, &first, k)
	srv.Request()
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "1", Resources: []*discovery.Resource{address(db0.UID, "5", EncodeWorkload(db0))}}
	next(t, k.published, "snapshot")
	srv.Request()

	second := cfg
	src := startSource(t, &second, newChangeSink())
	req := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if req.InitialResourceVersions[db0.UID] != "5" {
		t.Errorf("the reloaded source's first request %v", req.InitialResourceVersions)
	}
	if ns, ok := src.NamespaceOf(netip.MustParseAddr("10.244.0.10")); !ok || ns != "default" {
		t.Errorf("the reloaded source does not know db-0: %q %v", ns, ok)
	}
}
