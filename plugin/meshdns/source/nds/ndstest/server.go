// Package ndstest runs a real gRPC ADS server on loopback for tests of NDS clients.
package ndstest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// Server is a real gRPC ADS server on loopback that tests drive: each push they queue goes to the
// open stream, and every request the client sends (first request, ACK, NACK) comes back to them.
type Server struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	t     testing.TB
	Addr  string
	creds credentials.TransportCredentials
	srv   *grpc.Server
	// Pushes takes *discovery.DiscoveryResponse or *discovery.DeltaDiscoveryResponse for the stream.
	Pushes chan any
	// Requests gives *discovery.DiscoveryRequest or *discovery.DeltaDiscoveryRequest from the client.
	Requests chan any
	// OnOpen, when set, gives a push sent at once on every new stream, as istiod sends the current
	// table; its requests are then dropped rather than queued on Requests.
	OnOpen func() any
	// OnNode, when set, reads the first request of every new stream and gives the push sent at once
	// for its node id; that stream's requests are then dropped, and PushTo sends it more.
	OnNode func(node *core.Node) any

	mu      sync.Mutex
	byNode  map[string]chan any // the open streams of OnNode, by node id
	tokens  []string            // authorization of each stream, in order
	streams int                 // open now
}

// Tokens returns the authorization metadata of every stream so far, in order.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}

// New starts a server on a free loopback port, with TLS when creds is not nil, stopped at the end of
// the test.
func New(t testing.TB, creds credentials.TransportCredentials) *Server {
	s := &Server{t: t, creds: creds, Pushes: make(chan any, 16), Requests: make(chan any, 64)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) serve(l net.Listener) {
	var opts []grpc.ServerOption
	if s.creds != nil {
		opts = append(opts, grpc.Creds(s.creds))
	}
	s.srv = grpc.NewServer(opts...)
	discovery.RegisterAggregatedDiscoveryServiceServer(s.srv, s)
	go s.srv.Serve(l)
}

// Stop kills the server and every stream, as a crashed istiod would.
func (s *Server) Stop() { s.srv.Stop() }

// Restart serves again on the same address.
func (s *Server) Restart() {
	var l net.Listener
	var err error
	for range 50 { // the old socket may take a moment to free
		if l, err = net.Listen("tcp", s.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(l)
}

func (s *Server) open(ctx context.Context) func() {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.tokens = append(s.tokens, fmt.Sprint(md.Get("authorization")))
	s.streams++
	s.mu.Unlock()
	return func() { s.mu.Lock(); s.streams--; s.mu.Unlock() }
}

// OpenStreams is the number of streams open now.
func (s *Server) OpenStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

func (s *Server) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	defer s.open(stream.Context())()
	return s.relay(stream.Context(), func() (any, error) { return stream.Recv() }, func(p any) error {
		return stream.Send(p.(*discovery.DiscoveryResponse))
	})
}

func (s *Server) DeltaAggregatedResources(stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	defer s.open(stream.Context())()
	return s.relay(stream.Context(), func() (any, error) { return stream.Recv() }, func(p any) error {
		return stream.Send(p.(*discovery.DeltaDiscoveryResponse))
	})
}

// Nodes returns the node ids of the streams OnNode opened that are open now, sorted.
func (s *Server) Nodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.byNode))
}

// PushTo sends push on the open stream of node id (with OnNode), reporting false when there is none.
func (s *Server) PushTo(id string, push any) bool {
	s.mu.Lock()
	ch, ok := s.byNode[id]
	s.mu.Unlock()
	if ok {
		ch <- push
	}
	return ok
}

func nodeOf(r any) *core.Node {
	switch r := r.(type) {
	case *discovery.DiscoveryRequest:
		return r.GetNode()
	case *discovery.DeltaDiscoveryRequest:
		return r.GetNode()
	}
	return nil
}

func (s *Server) relay(ctx context.Context, recv func() (any, error), send func(any) error) error {
	auto := s.OnOpen
	if auto != nil {
		if err := send(auto()); err != nil {
			return err
		}
	}
	var mine chan any // this stream's pushes, with OnNode
	if on := s.OnNode; on != nil {
		first, err := recv()
		if err != nil {
			return err
		}
		node := nodeOf(first)
		id := node.GetId()
		mine = make(chan any, 16)
		s.mu.Lock()
		if s.byNode == nil {
			s.byNode = map[string]chan any{}
		}
		s.byNode[id] = mine
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if s.byNode[id] == mine {
				delete(s.byNode, id)
			}
			s.mu.Unlock()
		}()
		if p := on(node); p != nil {
			if err := send(p); err != nil {
				return err
			}
		}
		auto = func() any { return nil } // drop the requests that follow
	}
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				errc <- err
				return
			}
			if auto == nil {
				s.Requests <- r
			}
		}
	}()
	for {
		select {
		case p := <-s.Pushes:
			if err := send(p); err != nil {
				return err
			}
		case p := <-mine:
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

// Request waits for the client's next request.
func (s *Server) Request() any {
	s.t.Helper()
	select {
	case r := <-s.Requests:
		return r
	case <-time.After(10 * time.Second):
		s.t.Fatal("no request from the client within 10s")
		return nil
	}
}
