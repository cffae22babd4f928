package nds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Source subscribes to the NameTable of one control plane and publishes every push it can apply.
type Source struct {
	cfg    *Config
	client *xds.Client
}

var _ source.Source = (*Source)(nil)

var metrics = xds.NewMetrics("nds", "NDS")

// New checks cfg and returns its source; nothing connects until Run.
func New(cfg *Config) (*Source, error) {
	md := map[string]any{}
	for k, v := range cfg.metadata() {
		md[k] = v
	}
	meta, err := structpb.NewStruct(md)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg}
	s.client, err = xds.New(xds.Config{
		Dial:    cfg.dial(),
		Name:    s.String(),
		Node:    &core.Node{Id: cfg.nodeID(), Cluster: cfg.Cluster, Metadata: meta},
		TypeURL: TypeURL,
		Delta:   cfg.Delta,
		Metrics: metrics,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Kind implements source.Source.
func (s *Source) Kind() string { return "nds" }

// String implements source.Source.
func (s *Source) String() string { return "nds " + s.cfg.Address }

// NodeID returns the node id the source presents to the control plane.
func (s *Source) NodeID() string { return s.client.NodeID() }

// Run implements source.Source: it keeps a stream open, reconnecting with backoff after any error,
// until ctx ends. The last applied table keeps serving while it is disconnected.
func (s *Source) Run(ctx context.Context, sink source.Sink) {
	h := &handler{src: s, sink: sink, resources: map[string][]table.Entry{}}
	if err := s.client.Run(ctx, h); err != nil {
		sink.Reject(err)
	}
}

// handler applies the pushes of one Run; in delta, resources holds the entries of each resource.
type handler struct {
	src       *Source
	sink      source.Sink
	resources map[string][]table.Entry
}

func (h *handler) Apply(r *xds.Response) error {
	if !r.Delta {
		entries, err := decodeAll(r.Resources)
		if err != nil {
			return err
		}
		h.applied(entries)
		return nil
	}
	next, err := applyDelta(h.resources, r)
	if err != nil {
		return err
	}
	h.resources = next
	h.applied(flatten(next))
	return nil
}

func (h *handler) Rejected(err error) { h.sink.Reject(err) }

func (h *handler) applied(entries []table.Entry) {
	h.sink.Publish(entries)
	entriesGauge.WithLabelValues(h.src.cfg.Address).Set(float64(len(entries)))
}

// applyDelta returns the resources after r, leaving resources as they were when r cannot be applied.
func applyDelta(resources map[string][]table.Entry, r *xds.Response) (map[string][]table.Entry, error) {
	next := maps.Clone(resources)
	for _, res := range r.Resources {
		entries, err := decodeAny(res.Body)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", res.Name, err)
		}
		next[res.Name] = entries
	}
	for _, name := range r.Removed {
		delete(next, name)
	}
	return next, nil
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

func decodeAll(resources []xds.Resource) ([]table.Entry, error) {
	out := []table.Entry{}
	for i, r := range resources {
		entries, err := decodeAny(r.Body)
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
