package nds

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
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

// Source subscribes to the NameTable of one control plane and publishes every push it can apply:
// as one node, or (Config.PerNamespace) as one node in each namespace with clients.
type Source struct {
	cfg    *Config
	client *xds.Client // one node; nil per namespace

	clients source.ClientNamespaces // per namespace: where the namespaces with clients come from
	tokens  source.Tokens           // per namespace, with token_request: who makes their tokens
	retry   xds.Backoff             // per namespace: the subscriptions' backoff, when not zero
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
	if cfg.PerNamespace() {
		// Checks the credentials settings now, as the one node's client does.
		if _, err := xds.New(s.clientConfig("", nil)); err != nil {
			return nil, err
		}
		return s, nil
	}
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

// String implements source.Source. A per-namespace source is named apart, so that a reload
// switching modes does not carry one mode's table into the other.
func (s *Source) String() string {
	if s.cfg.PerNamespace() {
		return "nds " + s.cfg.Address + " per namespace"
	}
	return "nds " + s.cfg.Address
}

// NodeID returns the node id the source presents to the control plane; per namespace, that of a
// namespace's subscriptions is NodeIDIn.
func (s *Source) NodeID() string {
	if s.client == nil {
		return s.cfg.nodeIDIn("NAMESPACE")
	}
	return s.client.NodeID()
}

// Address is the control plane's address.
func (s *Source) Address() string { return s.cfg.Address }

// UseClientNamespaces gives a per-namespace source ("namespaces clients") the namespaces it
// subscribes for.
func (s *Source) UseClientNamespaces(c source.ClientNamespaces) { s.clients = c }

// UseTokens gives a per-namespace source with token_request what makes each namespace's token.
func (s *Source) UseTokens(t source.Tokens) { s.tokens = t }

// Run implements source.Source: it keeps a stream open, reconnecting with backoff after any error,
// until ctx ends. The last applied table keeps serving while it is disconnected.
func (s *Source) Run(ctx context.Context, sink source.Sink) {
	if s.cfg.PerNamespace() {
		s.runPerNamespace(ctx, sink)
		return
	}
	h := s.handlerFor(sink)
	if err := s.client.Run(ctx, h); err != nil {
		sink.Reject(err)
	}
}

// NewHandler returns what applies the pushes of the source's subscription to sink, as Run does:
// for a benchmark or a tool that has the pushes by other means.
func (s *Source) NewHandler(sink source.Sink) xds.Handler { return s.handlerFor(sink) }

// handlerFor is the handler of the one-node subscription: whole tables to sink, then, when sink
// takes changes, only the hosts each push changes.
func (s *Source) handlerFor(sink source.Sink) *handler {
	h := newHandler(func(entries []table.Entry) {
		sink.Publish(entries)
		entriesGauge.WithLabelValues(s.cfg.Address).Set(float64(len(entries)))
	}, sink.Reject)
	if cs, ok := sink.(source.ChangeSink); ok {
		h.changes(func(hosts map[string][]table.Entry, n int) {
			cs.Change(hosts)
			entriesGauge.WithLabelValues(s.cfg.Address).Set(float64(n))
		})
	}
	return h
}

// handler applies the pushes of one subscription; in delta, resources holds the entries of each
// resource.
type handler struct {
	publish   func([]table.Entry)
	reject    func(error)
	resources map[string][]table.Entry
	// skipSame, per namespace, skips a state-of-the-world push whose bytes are those of the last one
	// applied (sum): istiod pushes every namespace's table on changes most namespaces do not see, and
	// decoding and comparing a 10k-name table costs some 40 ms, its hash under 1 (BenchmarkSamePush).
	skipSame bool
	sum      [sha256.Size]byte
	// With change set, a state-of-the-world push after the first is diffed against the last one
	// applied (diff) and only its changed hosts are handed on, with the number of hosts now held.
	change func(hosts map[string][]table.Entry, n int)
	diff   *differ
}

// changes makes h hand on what each push changes rather than whole tables.
func (h *handler) changes(change func(hosts map[string][]table.Entry, n int)) {
	h.change, h.diff = change, newDiffer()
}

func newHandler(publish func([]table.Entry), reject func(error)) *handler {
	return &handler{publish: publish, reject: reject, resources: map[string][]table.Entry{}}
}

func (h *handler) Apply(r *xds.Response) error {
	if !r.Delta {
		var sum [sha256.Size]byte
		if h.skipSame {
			sum = sumOf(r.Resources)
			if sum == h.sum {
				return nil
			}
		}
		if h.diff != nil && len(r.Resources) == 1 {
			if err := h.applyDiff(r.Resources[0].Body); err != nil {
				return fmt.Errorf("resource 0: %w", err)
			}
			h.sum = sum
			return nil
		}
		entries, err := decodeAll(r.Resources)
		if err != nil {
			return err
		}
		if h.diff != nil {
			h.diff = newDiffer() // the next one-resource push is published whole
		}
		h.applied(entries)
		h.sum = sum
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

// applyDiff applies a one-resource push through the differ: the first one whole, then only what
// changed, nothing when nothing did.
func (h *handler) applyDiff(r *anypb.Any) error {
	if r == nil {
		return errors.New("empty resource")
	}
	if r.TypeUrl != TypeURL {
		return fmt.Errorf("resource of type %q, want %s", r.TypeUrl, TypeURL)
	}
	changed, removed, first, err := h.diff.apply(r.Value)
	if err != nil {
		return err
	}
	if first {
		h.applied(changed)
		return nil
	}
	if len(changed) == 0 && len(removed) == 0 {
		return nil
	}
	hosts := make(map[string][]table.Entry, len(changed)+len(removed))
	for _, e := range changed {
		ch := table.CanonicalHost(e.Host)
		hosts[ch] = append(hosts[ch], e)
	}
	for _, ch := range removed {
		hosts[ch] = nil
	}
	h.change(hosts, h.diff.live)
	return nil
}

func (h *handler) Rejected(err error) { h.reject(err) }

func (h *handler) applied(entries []table.Entry) { h.publish(entries) }

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

// sumOf hashes the type and bytes of every resource, each with its length.
func sumOf(resources []xds.Resource) [sha256.Size]byte {
	d := sha256.New()
	var n [8]byte
	for _, r := range resources {
		for _, b := range [][]byte{[]byte(r.Body.GetTypeUrl()), r.Body.GetValue()} {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			d.Write(n[:])
			d.Write(b)
		}
	}
	var out [sha256.Size]byte
	d.Sum(out[:0])
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
