package nds

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

func init() { clog.Discard() }

var reviews = table.Entry{
	Host: "reviews.default.svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr("10.96.0.12")},
	Registry: "Kubernetes", ShortName: "reviews", Namespace: "default",
}

var ratings = table.Entry{
	Host: "ratings.default.svc.cluster.local", Addrs: []netip.Addr{netip.MustParseAddr("10.96.0.13"), netip.MustParseAddr("fd00::13")},
	Registry: "Kubernetes", ShortName: "ratings", Namespace: "default",
}

func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	if cfg.Cluster == "" {
		cfg.Cluster = DefaultCluster
	}
	src, err := New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	src.client.Retry = xds.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	return src
}

func TestStateOfTheWorldAckNack(t *testing.T) {
	srv := ndstest.New(t, nil)
	src := newSource(t, Config{Address: srv.Addr, Namespace: "bookinfo", Metadata: map[string]string{"LABELS": "x", "ISTIO_VERSION": "1.30.1"}})
	k := newSink()
	runSource(t, src, k)

	first := srv.Request().(*discovery.DiscoveryRequest)
	if first.TypeUrl != TypeURL || first.Node == nil {
		t.Fatalf("first request %v", first)
	}
	if !regexp.MustCompile(`^sidecar~[0-9a-f.:]+~[^.~]+\.bookinfo~bookinfo\.svc\.cluster\.local$`).MatchString(first.Node.Id) {
		t.Errorf("default node id %q", first.Node.Id)
	}
	md := first.Node.Metadata.AsMap()
	for k, want := range map[string]string{"DNS_CAPTURE": "true", "DNS_AUTO_ALLOCATE": "true", "CLUSTER_ID": "Kubernetes", "NAMESPACE": "bookinfo", "ISTIO_VERSION": "1.30.1", "LABELS": "x"} {
		if md[k] != want {
			t.Errorf("metadata %s = %v, want %q", k, md[k], want)
		}
	}

	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "v1", Nonce: "n1", Resources: []*anypb.Any{nameTable(reviews, ratings)}}
	if got := k.next(t); len(got) != 2 {
		t.Errorf("published %v", got)
	}
	ack := srv.Request().(*discovery.DiscoveryRequest)
	if ack.VersionInfo != "v1" || ack.ResponseNonce != "n1" || ack.ErrorDetail != nil {
		t.Errorf("ACK %v", ack)
	}

	bad := reviews
	bad.Addrs = nil
	badTable := append(EncodeNameTable([]table.Entry{ratings}), EncodeNameTable([]table.Entry{{Host: "bad..host", Addrs: reviews.Addrs}})...)
	for i, push := range []*discovery.DiscoveryResponse{
		{TypeUrl: TypeURL, VersionInfo: "v2", Nonce: "n2", Resources: []*anypb.Any{{TypeUrl: TypeURL, Value: badTable}}},
		{TypeUrl: TypeURL, VersionInfo: "v3", Nonce: "n3", Resources: []*anypb.Any{{TypeUrl: TypeURL, Value: []byte{0x0a, 0xff}}}},
		{TypeUrl: TypeURL, VersionInfo: "v4", Nonce: "n4", Resources: []*anypb.Any{{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}}},
		{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", VersionInfo: "v5", Nonce: "n5"},
	} {
		srv.Pushes <- push
		err := k.nextReject(t)
		nack := srv.Request().(*discovery.DiscoveryRequest)
		if nack.ResponseNonce != push.Nonce || nack.VersionInfo != "v1" || nack.ErrorDetail == nil || nack.ErrorDetail.Code != int32(codes.InvalidArgument) {
			t.Errorf("push %d: NACK %v", i, nack)
		}
		if nack.ErrorDetail.GetMessage() != err.Error() || !strings.Contains(err.Error(), push.VersionInfo) {
			t.Errorf("push %d: error detail %q, reported %q", i, nack.ErrorDetail.GetMessage(), err)
		}
		if i == 0 && !strings.Contains(err.Error(), `host "bad..host"`) {
			t.Errorf("the NACK does not name the bad host: %v", err)
		}
	}

	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "v6", Nonce: "n6", Resources: []*anypb.Any{nameTable(reviews)}}
	if got := k.next(t); len(got) != 1 || got[0].Host != reviews.Host {
		t.Errorf("published %v", got)
	}
	if ack := srv.Request().(*discovery.DiscoveryRequest); ack.VersionInfo != "v6" || ack.ErrorDetail != nil {
		t.Errorf("ACK after NACKs %v", ack)
	}
	if got := testutil.ToFloat64(pushesTotal.WithLabelValues(srv.Addr, "rejected")); got != 4 {
		t.Errorf("rejected pushes metric %v, want 4", got)
	}
	if got := testutil.ToFloat64(entriesGauge.WithLabelValues(srv.Addr)); got != 1 {
		t.Errorf("entries metric %v, want 1", got)
	}
}

func TestReconnectsAfterTheServerDies(t *testing.T) {
	srv := ndstest.New(t, nil)
	src := newSource(t, Config{Address: srv.Addr})
	k := newSink()
	runSource(t, src, k)

	srv.Request()
	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "v1", Nonce: "a", Resources: []*anypb.Any{nameTable(reviews)}}
	k.next(t)
	srv.Request() // ACK
	if got := testutil.ToFloat64(connectedGauge.WithLabelValues(srv.Addr)); got != 1 {
		t.Errorf("connected gauge %v while connected", got)
	}

	srv.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(connectedGauge.WithLabelValues(srv.Addr)) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(connectedGauge.WithLabelValues(srv.Addr)); got != 0 {
		t.Errorf("connected gauge %v after the server died", got)
	}
	time.Sleep(200 * time.Millisecond) // several failed attempts
	srv.Restart()

	again := srv.Request().(*discovery.DiscoveryRequest)
	if again.VersionInfo != "v1" || again.Node == nil {
		t.Errorf("first request after reconnecting %v: it should carry the node and the version in use", again)
	}
	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "v2", Nonce: "b", Resources: []*anypb.Any{nameTable(reviews, ratings)}}
	if got := k.next(t); len(got) != 2 {
		t.Errorf("after reconnecting: %v", got)
	}
}

func TestDelta(t *testing.T) {
	srv := ndstest.New(t, nil)
	src := newSource(t, Config{Address: srv.Addr, Delta: true})
	k := newSink()
	runSource(t, src, k)

	first := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if first.TypeUrl != TypeURL || first.Node == nil || len(first.InitialResourceVersions) != 0 {
		t.Fatalf("first delta request %v", first)
	}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "1", Resources: []*discovery.Resource{
		{Name: "a", Version: "1", Resource: nameTable(reviews)},
		{Name: "b", Version: "1", Resource: nameTable(ratings)},
	}}
	if got := k.next(t); len(got) != 2 {
		t.Errorf("after adding two resources: %v", got)
	}
	if ack := srv.Request().(*discovery.DeltaDiscoveryRequest); ack.ResponseNonce != "1" || ack.ErrorDetail != nil {
		t.Errorf("ACK %v", ack)
	}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "2", Resources: []*discovery.Resource{
		{Name: "a", Version: "2", Resource: &anypb.Any{TypeUrl: TypeURL, Value: []byte{0x0a, 0x03, 0x0a, 0x01}}},
	}}
	err := k.nextReject(t)
	if nack := srv.Request().(*discovery.DeltaDiscoveryRequest); nack.ResponseNonce != "2" || nack.ErrorDetail == nil || !strings.Contains(err.Error(), `resource "a"`) {
		t.Errorf("NACK %v for %v", nack, err)
	}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: TypeURL, Nonce: "3", RemovedResources: []string{"a"}}
	if got := k.next(t); len(got) != 1 || got[0].Host != ratings.Host {
		t.Errorf("after removing a (the NACKed push must not have touched it): %v", got)
	}
	srv.Request()

	// A new stream tells the server what it has.
	srv.Stop()
	srv.Restart()
	again := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if len(again.InitialResourceVersions) != 1 || again.InitialResourceVersions["b"] != "1" {
		t.Errorf("initial resource versions after reconnecting: %v", again.InitialResourceVersions)
	}
}

func TestTokenIsReadForEveryStream(t *testing.T) {
	srv := ndstest.New(t, nil)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := newSource(t, Config{Address: srv.Addr, TokenFile: tok})
	runSource(t, src, newSink())
	srv.Request()
	if err := os.WriteFile(tok, []byte("rotated-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Restart()
	srv.Request()
	if tokens := srv.Tokens(); len(tokens) < 2 || tokens[0] != "[Bearer first-token]" || tokens[len(tokens)-1] != "[Bearer rotated-token]" {
		t.Errorf("tokens seen: %v", tokens)
	}
}

// TestLargeTable pushes a table of 100,000 names (about 10 MB, past gRPC's default 4 MB limit on
// what a client receives): a large mesh's table must arrive whole.
func TestLargeTable(t *testing.T) {
	srv := ndstest.New(t, nil)
	src := newSource(t, Config{Address: srv.Addr})
	k := newSink()
	runSource(t, src, k)
	srv.Request()
	entries := make([]table.Entry, 100_000)
	for i := range entries {
		entries[i] = table.Entry{
			Host:     fmt.Sprintf("service-%d.namespace-%d.svc.cluster.local", i, i%100),
			Addrs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Registry: "Kubernetes", ShortName: fmt.Sprintf("service-%d", i), Namespace: fmt.Sprintf("namespace-%d", i%100),
		}
	}
	any := nameTable(entries...)
	if len(any.Value) < 5<<20 {
		t.Fatalf("the table is only %d bytes", len(any.Value))
	}
	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "v1", Nonce: "n1", Resources: []*anypb.Any{any}}
	if got := k.next(t); len(got) != len(entries) {
		t.Errorf("published %d entries, want %d", len(got), len(entries))
	}
}
