package nds

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
)

// adsServer is a real gRPC ADS server on loopback that the tests drive: each push they queue goes to
// the open stream, and every request the client sends (first request, ACK, NACK) comes back to them.
type adsServer struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	t      *testing.T
	addr   string
	creds  credentials.TransportCredentials
	srv    *grpc.Server
	pushes chan any // *discovery.DiscoveryResponse or *discovery.DeltaDiscoveryResponse
	reqs   chan any // *discovery.DiscoveryRequest or *discovery.DeltaDiscoveryRequest

	mu      sync.Mutex
	tokens  []string // authorization of each stream, in order
	streams int      // open now
}

func newADSServer(t *testing.T, creds credentials.TransportCredentials) *adsServer {
	s := &adsServer{t: t, creds: creds, pushes: make(chan any, 16), reqs: make(chan any, 64)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(s.stop)
	return s
}

func (s *adsServer) serve(l net.Listener) {
	var opts []grpc.ServerOption
	if s.creds != nil {
		opts = append(opts, grpc.Creds(s.creds))
	}
	s.srv = grpc.NewServer(opts...)
	discovery.RegisterAggregatedDiscoveryServiceServer(s.srv, s)
	go s.srv.Serve(l)
}

// stop kills the server and every stream, as a crashed istiod would.
func (s *adsServer) stop() { s.srv.Stop() }

// restart serves again on the same address.
func (s *adsServer) restart() {
	var l net.Listener
	var err error
	for range 50 { // the old socket may take a moment to free
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(l)
}

func (s *adsServer) open(ctx context.Context) func() {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.tokens = append(s.tokens, fmt.Sprint(md.Get("authorization")))
	s.streams++
	s.mu.Unlock()
	return func() { s.mu.Lock(); s.streams--; s.mu.Unlock() }
}

func (s *adsServer) openStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

func (s *adsServer) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	defer s.open(stream.Context())()
	return s.relay(stream.Context(), func() (any, error) { return stream.Recv() }, func(p any) error {
		return stream.Send(p.(*discovery.DiscoveryResponse))
	})
}

func (s *adsServer) DeltaAggregatedResources(stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	defer s.open(stream.Context())()
	return s.relay(stream.Context(), func() (any, error) { return stream.Recv() }, func(p any) error {
		return stream.Send(p.(*discovery.DeltaDiscoveryResponse))
	})
}

func (s *adsServer) relay(ctx context.Context, recv func() (any, error), send func(any) error) error {
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				errc <- err
				return
			}
			s.reqs <- r
		}
	}()
	for {
		select {
		case p := <-s.pushes:
			if err := send(p); err != nil {
				return err
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// request waits for the client's next request.
func (s *adsServer) request() any {
	s.t.Helper()
	select {
	case r := <-s.reqs:
		return r
	case <-time.After(10 * time.Second):
		s.t.Fatal("no request from the client within 10s")
		return nil
	}
}

func nameTable(entries ...table.Entry) *anypb.Any {
	return &anypb.Any{TypeUrl: TypeURL, Value: EncodeNameTable(entries)}
}

// sink records what the source publishes.
type sink struct {
	published chan []table.Entry
	rejected  chan error
}

func newSink() *sink {
	return &sink{published: make(chan []table.Entry, 16), rejected: make(chan error, 16)}
}

func (k *sink) Publish(e []table.Entry) { k.published <- e }
func (k *sink) Reject(err error)        { k.rejected <- err }

func (k *sink) next(t *testing.T) []table.Entry {
	t.Helper()
	select {
	case e := <-k.published:
		return e
	case err := <-k.rejected:
		t.Fatalf("rejected: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published within 10s")
	}
	return nil
}

func (k *sink) nextReject(t *testing.T) error {
	t.Helper()
	select {
	case e := <-k.published:
		t.Fatalf("published %v, want a rejection", e)
	case err := <-k.rejected:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("nothing rejected within 10s")
	}
	return nil
}

// runSource starts src against sink and stops it when the test ends, checking that Run returns.
func runSource(t *testing.T, src *Source, k *sink) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx, k); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return cancel
}
