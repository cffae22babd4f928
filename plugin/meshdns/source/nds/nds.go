package nds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

var log = clog.NewWithPlugin("meshdns")

// Backoff bounds between reconnection attempts.
const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// Source subscribes to the NameTable of one control plane and publishes every push it can apply.
type Source struct {
	cfg   *Config
	opts  []grpc.DialOption
	node  *core.Node
	retry backoff
}

var _ source.Source = (*Source)(nil)

// New checks cfg and returns its source; nothing connects until Run.
func New(cfg *Config) (*Source, error) {
	opts, err := cfg.dialOptions()
	if err != nil {
		return nil, err
	}
	md := map[string]any{}
	for k, v := range cfg.metadata() {
		md[k] = v
	}
	meta, err := structpb.NewStruct(md)
	if err != nil {
		return nil, err
	}
	return &Source{
		cfg:   cfg,
		opts:  opts,
		node:  &core.Node{Id: cfg.nodeID(), Cluster: cfg.Cluster, Metadata: meta},
		retry: backoff{base: backoffBase, max: backoffMax},
	}, nil
}

// Kind implements source.Source.
func (s *Source) Kind() string { return "nds" }

// String implements source.Source.
func (s *Source) String() string { return "nds " + s.cfg.Address }

// NodeID returns the node id the source presents to the control plane.
func (s *Source) NodeID() string { return s.node.Id }

// streamState is what survives a reconnection: what was applied last, so the new stream can say so.
type streamState struct {
	version   string                   // state of the world: version_info last ACKed
	resources map[string][]table.Entry // delta: resources by name
	versions  map[string]string        // delta: their versions
	connected bool
}

// Run implements source.Source: it keeps a stream open, reconnecting with backoff after any error,
// until ctx ends. The last applied table keeps serving while it is disconnected.
func (s *Source) Run(ctx context.Context, sink source.Sink) {
	addr := s.cfg.Address
	st := &streamState{resources: map[string][]table.Entry{}, versions: map[string]string{}}
	defer s.disconnected(st)
	conn, err := grpc.NewClient(addr, s.opts...)
	if err != nil {
		sink.Reject(fmt.Errorf("connecting to %s: %w", addr, err))
		return
	}
	defer conn.Close()
	client := discovery.NewAggregatedDiscoveryServiceClient(conn)
	failing := false
	for {
		var err error
		if s.cfg.Delta {
			err = s.runDelta(ctx, client, sink, st)
		} else {
			err = s.runSotW(ctx, client, sink, st)
		}
		if ctx.Err() != nil {
			return
		}
		// Log changes of state, not every attempt: losing a connection, then the first failure.
		if st.connected {
			log.Warningf("%s: stream lost, serving the last table while reconnecting: %v", s, err)
			s.disconnected(st)
			s.retry.reset()
		} else if !failing {
			log.Warningf("%s: cannot reach the control plane, retrying with backoff: %v", s, err)
		}
		failing = true
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.retry.next()):
		}
	}
}

// pushed records a push that reached the source, applied or not, and the connection it proves.
// The gauge counts connected streams, so that the old and the new instance of a reload, briefly
// both connected to the same address, do not overwrite each other's state.
func (s *Source) pushed(st *streamState) {
	if !st.connected {
		st.connected = true
		connectedGauge.WithLabelValues(s.cfg.Address).Inc()
		log.Infof("%s: connected as %s", s, s.node.Id)
	}
}

func (s *Source) disconnected(st *streamState) {
	if st.connected {
		st.connected = false
		connectedGauge.WithLabelValues(s.cfg.Address).Dec()
	}
}

func (s *Source) applied(entries []table.Entry, sink source.Sink) {
	s.retry.reset()
	sink.Publish(entries)
	pushesTotal.WithLabelValues(s.cfg.Address, "applied").Inc()
	entriesGauge.WithLabelValues(s.cfg.Address).Set(float64(len(entries)))
	lastPush.mark(s.cfg.Address)
}

func (s *Source) rejected(err error, sink source.Sink) *status.Status {
	pushesTotal.WithLabelValues(s.cfg.Address, "rejected").Inc()
	sink.Reject(err)
	return &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

func (s *Source) runSotW(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, sink source.Sink, st *streamState) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: s.node, TypeUrl: TypeURL, VersionInfo: st.version}); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		s.pushed(st)
		ack := &discovery.DiscoveryRequest{TypeUrl: TypeURL, ResponseNonce: resp.Nonce}
		entries, err := decodeAll(resp.TypeUrl, resp.Resources)
		if err != nil {
			ack.VersionInfo = st.version // a NACK names the version still in use
			ack.ErrorDetail = s.rejected(fmt.Errorf("push version %q: %w", resp.VersionInfo, err), sink)
		} else {
			s.applied(entries, sink)
			st.version = resp.VersionInfo
			ack.VersionInfo = resp.VersionInfo
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

func (s *Source) runDelta(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, sink source.Sink, st *streamState) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	first := &discovery.DeltaDiscoveryRequest{Node: s.node, TypeUrl: TypeURL, InitialResourceVersions: maps.Clone(st.versions)}
	if err := stream.Send(first); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		s.pushed(st)
		ack := &discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL, ResponseNonce: resp.Nonce}
		next, versions, err := applyDelta(st, resp)
		if err != nil {
			ack.ErrorDetail = s.rejected(fmt.Errorf("delta push %q: %w", resp.SystemVersionInfo, err), sink)
		} else {
			st.resources, st.versions = next, versions
			s.applied(flatten(next), sink)
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// applyDelta returns the resources after resp, leaving st as it was when resp cannot be applied.
func applyDelta(st *streamState, resp *discovery.DeltaDiscoveryResponse) (map[string][]table.Entry, map[string]string, error) {
	if resp.TypeUrl != TypeURL {
		return nil, nil, fmt.Errorf("unexpected type %q", resp.TypeUrl)
	}
	next, versions := maps.Clone(st.resources), maps.Clone(st.versions)
	for _, r := range resp.Resources {
		entries, err := decodeAny(r.Resource)
		if err != nil {
			return nil, nil, fmt.Errorf("resource %q: %w", r.Name, err)
		}
		next[r.Name], versions[r.Name] = entries, r.Version
	}
	for _, name := range resp.RemovedResources {
		delete(next, name)
		delete(versions, name)
	}
	return next, versions, nil
}

// flatten concatenates the entries of every resource, in resource name order; the store merges
// hosts that several resources name.
func flatten(resources map[string][]table.Entry) []table.Entry {
	out := []table.Entry{}
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		out = append(out, resources[name]...)
	}
	return out
}

func decodeAll(typeURL string, resources []*anypb.Any) ([]table.Entry, error) {
	if typeURL != TypeURL {
		return nil, fmt.Errorf("unexpected type %q", typeURL)
	}
	out := []table.Entry{}
	for i, r := range resources {
		entries, err := decodeAny(r)
		if err != nil {
			return nil, fmt.Errorf("resource %d: %w", i, err)
		}
		out = append(out, entries...)
	}
	return out, nil
}

func decodeAny(r *anypb.Any) ([]table.Entry, error) {
	if r == nil {
		return nil, errors.New("empty resource")
	}
	if r.TypeUrl != TypeURL {
		return nil, fmt.Errorf("resource of type %q, want %s", r.TypeUrl, TypeURL)
	}
	return DecodeNameTable(r.Value)
}
