package xds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/anypb"
)

func init() { clog.Discard() }

const testType = "type.googleapis.com/test.Thing"

var testMetrics = NewMetrics("xdstest", "test")

// recorder is a Handler keeping each resource's body as a string; a body "bad" is refused, alone.
type recorder struct {
	things   map[string]string
	applied  chan *Response
	rejected chan error
}

func newRecorder() *recorder {
	return &recorder{things: map[string]string{}, applied: make(chan *Response, 16), rejected: make(chan error, 16)}
}

func (r *recorder) Apply(resp *Response) error {
	var bad []string
	for _, res := range resp.Resources {
		if string(res.Body.GetValue()) == "bad" {
			bad = append(bad, res.Name)
			continue
		}
		r.things[res.Name] = string(res.Body.GetValue())
	}
	for _, n := range resp.Removed {
		delete(r.things, n)
	}
	r.applied <- resp
	if bad != nil {
		return &Rejected{Names: bad, Err: fmt.Errorf("resources %v are bad", bad)}
	}
	return nil
}

func (r *recorder) Rejected(err error) { r.rejected <- err }

func (r *recorder) Resume(prev Handler) { r.things = maps.Clone(prev.(*recorder).things) }

func thing(name, version, body string) *discovery.Resource {
	return &discovery.Resource{Name: name, Version: version, Resource: &anypb.Any{TypeUrl: testType, Value: []byte(body)}}
}

func startClient(t *testing.T, cfg Config, h Handler) {
	t.Helper()
	cfg.Node, cfg.TypeURL, cfg.Metrics, cfg.Name = &core.Node{Id: "test~1.2.3.4~a.b~b.svc.cluster.local"}, testType, testMetrics, "test "+cfg.Address
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Retry = Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx, h); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

func wait[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing within 10s")
	}
	var zero T
	return zero
}

// TestDeltaPartialNack: a push with one bad resource is NACKed naming it, the rest applied; a new
// stream names the versions of what was applied, not of the bad one.
func TestDeltaPartialNack(t *testing.T) {
	srv := ndstest.New(t, nil)
	h := newRecorder()
	startClient(t, Config{Dial: Dial{Address: srv.Addr}, Delta: true, Subscribe: []string{"*"}}, h)

	first := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if first.TypeUrl != testType || first.Node.GetId() == "" || len(first.ResourceNamesSubscribe) != 1 || first.ResourceNamesSubscribe[0] != "*" {
		t.Fatalf("first request %v", first)
	}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: testType, Nonce: "1", SystemVersionInfo: "s1",
		Resources: []*discovery.Resource{thing("a", "1", "A"), thing("b", "1", "B")}}
	if r := wait(t, h.applied); !r.Delta || r.Version != "s1" || len(r.Resources) != 2 || r.Resources[0].Name != "a" || r.Resources[0].Version != "1" {
		t.Errorf("first response %+v", r)
	}
	if ack := srv.Request().(*discovery.DeltaDiscoveryRequest); ack.ResponseNonce != "1" || ack.ErrorDetail != nil {
		t.Errorf("ACK %v", ack)
	}
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: testType, Nonce: "2", SystemVersionInfo: "s2",
		Resources: []*discovery.Resource{thing("a", "2", "bad"), thing("c", "1", "C")}, RemovedResources: []string{"b"}}
	if r := wait(t, h.applied); len(r.Removed) != 1 || r.Removed[0] != "b" {
		t.Errorf("second response %+v", r)
	}
	err := wait(t, h.rejected)
	nack := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if nack.ResponseNonce != "2" || nack.ErrorDetail.GetMessage() != err.Error() || !strings.Contains(err.Error(), `delta push "s2"`) || !strings.Contains(err.Error(), "[a]") {
		t.Errorf("NACK %v for %v", nack, err)
	}
	var rej *Rejected
	if !errors.As(err, &rej) || len(rej.Names) != 1 {
		t.Errorf("the reported error %v does not carry the names", err)
	}

	srv.Stop()
	srv.Restart()
	again := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if want := map[string]string{"a": "1", "c": "1"}; !maps.Equal(again.InitialResourceVersions, want) {
		t.Errorf("initial resource versions %v, want %v (a's bad version 2 not recorded, b removed)", again.InitialResourceVersions, want)
	}
}

// TestWrongTypeIsNacked: a response of another type reaches Rejected, not Apply.
func TestWrongTypeIsNacked(t *testing.T) {
	srv := ndstest.New(t, nil)
	h := newRecorder()
	startClient(t, Config{Dial: Dial{Address: srv.Addr}}, h)
	srv.Request()
	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: "type.googleapis.com/other", VersionInfo: "v9", Nonce: "n"}
	err := wait(t, h.rejected)
	nack := srv.Request().(*discovery.DiscoveryRequest)
	if !strings.Contains(err.Error(), `push version "v9": unexpected type`) || nack.ErrorDetail.GetMessage() != err.Error() {
		t.Errorf("NACK %v for %v", nack, err)
	}
	select {
	case r := <-h.applied:
		t.Errorf("applied %v", r)
	default:
	}
	if got := testutil.ToFloat64(testMetrics.Pushes.WithLabelValues(srv.Addr, "rejected")); got != 1 {
		t.Errorf("rejected pushes %v", got)
	}
}

// TestCarryAcrossClients: a second client with the same Carry key, as a Corefile reload makes,
// starts from what the first applied and tells the control plane so.
func TestCarryAcrossClients(t *testing.T) {
	srv := ndstest.New(t, nil)
	key := "test " + t.Name()
	h1 := newRecorder()
	startClient(t, Config{Dial: Dial{Address: srv.Addr}, Delta: true, Carry: key}, h1)
	srv.Request()
	srv.Pushes <- &discovery.DeltaDiscoveryResponse{TypeUrl: testType, Nonce: "1", Resources: []*discovery.Resource{thing("a", "7", "A")}}
	wait(t, h1.applied)
	srv.Request()

	h2 := newRecorder()
	startClient(t, Config{Dial: Dial{Address: srv.Addr}, Delta: true, Carry: key}, h2)
	second := srv.Request().(*discovery.DeltaDiscoveryRequest)
	if second.InitialResourceVersions["a"] != "7" {
		t.Errorf("the successor's first request %v does not name what it carried", second)
	}
	if h2.things["a"] != "A" {
		t.Errorf("the successor holds %v", h2.things)
	}

	// Without a key nothing is carried.
	h3 := newRecorder()
	startClient(t, Config{Dial: Dial{Address: srv.Addr}, Delta: true}, h3)
	if third := srv.Request().(*discovery.DeltaDiscoveryRequest); len(third.InitialResourceVersions) != 0 || len(h3.things) != 0 {
		t.Errorf("a client without a key started from %v", third.InitialResourceVersions)
	}
}
