// Command ndspush is a stand-in control plane for bench/push-latency.sh: it serves ADS (state of the
// world) on a loopback address and pushes Istio's NameTable of N Kubernetes services to every stream,
// once when the stream opens and then, with -interval, again and again, each time with some addresses
// changed so that the resolver really rebuilds its table. The names and first addresses are those of
// bench/gentable, so its query files hit. It counts the ACKs and NACKs it gets back, and prints its
// counts once a second and when it stops (SIGINT/SIGTERM).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

func main() {
	var (
		addr       = flag.String("addr", "127.0.0.1:15010", "loopback address to serve ADS on")
		names      = flag.Int("names", 10000, "number of services in the table")
		namespaces = flag.Int("namespaces", 50, "number of namespaces the services are spread over (as gentable)")
		interval   = flag.Duration("interval", 0, "push a changed table this often; 0: only once, when a stream opens")
		rotate     = flag.Float64("rotate", 1, "percentage of the addresses each periodic push changes")
		quiet      = flag.Bool("quiet", false, "no per-second lines, only the final counts")
	)
	flag.Parse()
	if *names < 1 || *names > 1<<20 || *namespaces < 1 || *interval < 0 || *rotate < 0 || *rotate > 100 {
		fmt.Fprintln(os.Stderr, "ndspush: want 1 <= -names <= 1048576, -namespaces >= 1, -interval >= 0, 0 <= -rotate <= 100")
		os.Exit(2)
	}
	if err := run(*addr, *names, *namespaces, *interval, *rotate, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "ndspush:", err)
		os.Exit(1)
	}
}

func run(addr string, names, namespaces int, interval time.Duration, rotate float64, quiet bool) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s := newServer(names, namespaces, rotate)
	srv := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(srv, s)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Printf("ndspush: serving ADS on %s: %d names, interval %v, rotating %g%% per push\n", l.Addr(), names, interval, rotate)

	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	report := time.NewTicker(time.Second)
	defer report.Stop()
	start := time.Now()
	for {
		select {
		case <-tick:
			s.advance()
		case <-report.C:
			if !quiet {
				fmt.Printf("ndspush: %4.0fs %s\n", time.Since(start).Seconds(), s.counts())
			}
		case err := <-served:
			return err
		case <-ctx.Done():
			// Stop, not GracefulStop: the resolver's stream never ends by itself.
			srv.Stop()
			fmt.Printf("ndspush: total %s\n", s.counts())
			return nil
		}
	}
}

// snapshot is one version of the table, encoded once and sent to every stream as it is.
type snapshot struct {
	version string
	any     *anypb.Any
	changed chan struct{} // closed when a newer snapshot replaces this one
}

type server struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer // delta streams get Unimplemented

	entries []table.Entry
	step    int // addresses changed per periodic push
	next    int // first entry the next push changes
	gen     int

	mu  sync.Mutex
	cur *snapshot

	streams, pushes, acks, nacks atomic.Int64
}

// newServer builds gentable's services: svcI.nsJ.svc.cluster.local, J = I mod namespaces, with
// 10.96.0.0/12 addresses counted up from 10.96.0.1.
func newServer(n, namespaces int, rotate float64) *server {
	s := &server{entries: make([]table.Entry, n), step: int(float64(n)*rotate/100 + 0.5)}
	if rotate > 0 && s.step == 0 {
		s.step = 1
	}
	for i := range s.entries {
		short, ns := "svc"+strconv.Itoa(i), "ns"+strconv.Itoa(i%namespaces)
		s.entries[i] = table.Entry{
			Host:      short + "." + ns + ".svc.cluster.local",
			Addrs:     []netip.Addr{addr4(10<<24 + 96<<16 + uint32(i) + 1)},
			Registry:  table.RegistryKubernetes,
			ShortName: short,
			Namespace: ns,
		}
	}
	s.cur = s.snapshot()
	return s
}

func addr4(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// advance makes the next version: the next step entries, round robin, flip their address between
// 10.96.0.0/12 and the same offset in 10.112.0.0/12, so every push really differs from the last.
func (s *server) advance() {
	for range s.step {
		e := &s.entries[s.next]
		a := e.Addrs[0].As4()
		a[1] ^= 16 // 96..111 <-> 112..127
		e.Addrs = []netip.Addr{netip.AddrFrom4(a)}
		s.next = (s.next + 1) % len(s.entries)
	}
	snap := s.snapshot()
	s.mu.Lock()
	old := s.cur
	s.cur = snap
	s.mu.Unlock()
	close(old.changed)
}

func (s *server) snapshot() *snapshot {
	s.gen++
	return &snapshot{
		version: "v" + strconv.Itoa(s.gen),
		any:     &anypb.Any{TypeUrl: nds.TypeURL, Value: nds.EncodeNameTable(s.entries)},
		changed: make(chan struct{}),
	}
}

func (s *server) current() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *server) counts() string {
	return fmt.Sprintf("streams=%d pushes=%d acks=%d nacks=%d",
		s.streams.Load(), s.pushes.Load(), s.acks.Load(), s.nacks.Load())
}

// StreamAggregatedResources sends the current table at once, as istiod does, and then the newest
// one whenever it changes; a client slower than the pushes skips versions rather than queueing them.
func (s *server) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	s.streams.Add(1)
	defer s.streams.Add(-1)
	ctx := stream.Context()
	errc := make(chan error, 1)
	go func() { errc <- s.readRequests(stream) }()
	nonce := 0
	for snap := s.current(); ; {
		nonce++
		err := stream.Send(&discovery.DiscoveryResponse{
			VersionInfo: snap.version,
			Resources:   []*anypb.Any{snap.any},
			TypeUrl:     nds.TypeURL,
			Nonce:       snap.version + "-" + strconv.Itoa(nonce),
		})
		if err != nil {
			return err
		}
		s.pushes.Add(1)
		select {
		case <-snap.changed:
			snap = s.current()
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readRequests counts the client's ACKs and NACKs (requests answering a nonce, without and with an
// error_detail); the first request, the subscription, is not counted. It returns when the stream ends.
func (s *server) readRequests(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		switch {
		case req.ResponseNonce == "":
		case req.ErrorDetail != nil:
			if s.nacks.Add(1) <= 5 { // enough to see why, without flooding the log
				fmt.Fprintf(os.Stderr, "ndspush: NACK of %s: %s\n", req.ResponseNonce, req.ErrorDetail.GetMessage())
			}
		default:
			s.acks.Add(1)
		}
	}
}
