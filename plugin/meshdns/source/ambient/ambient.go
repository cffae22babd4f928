package ambient

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/protobuf/types/known/structpb"
)

var log = clog.NewWithPlugin("meshdns")

var (
	metrics = xds.NewMetrics("ambient", "Workload discovery (ambient)")

	resourcesGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "ambient_resources",
		Help:      "Address resources held from the control plane at address, by kind: workload or service.",
	}, []string{"address", "kind"})
)

// Source follows istiod's Address resources and publishes the hosts they imply; it also knows the
// namespace of each workload address, for client views.
type Source struct {
	cfg    *Config
	client *xds.Client
	// clients maps a workload address to its namespace: read by every query, written on changes.
	clients sync.Map                // netip.Addr -> string
	current atomic.Pointer[handler] // the running handler, for the debug endpoint
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Clients = (*Source)(nil)
)

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
		Dial:    cfg.Dial,
		Name:    s.String(),
		Node:    &core.Node{Id: cfg.nodeID(), Cluster: cfg.Cluster, Metadata: meta},
		TypeURL: TypeURL,
		// istiod sends Address over delta only, to a wildcard subscription (as ztunnel's).
		Delta:     true,
		Subscribe: []string{"*"},
		Carry:     s.String() + " " + cfg.clusterDomain(),
		Metrics:   metrics,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Kind implements source.Source.
func (s *Source) Kind() string { return "ambient" }

// String implements source.Source.
func (s *Source) String() string { return s.cfg.String() }

// NodeID returns the node id the source presents to the control plane.
func (s *Source) NodeID() string { return s.client.NodeID() }

// NamespaceOf implements source.Clients: the namespace of the workload at a.
func (s *Source) NamespaceOf(a netip.Addr) (string, bool) {
	ns, ok := s.clients.Load(a)
	if !ok {
		return "", false
	}
	return ns.(string), true
}

// Run implements source.Source: it follows the control plane until ctx ends, serving the last
// table while disconnected.
func (s *Source) Run(ctx context.Context, sink source.Sink) {
	h := &handler{src: s, sink: sink, idx: newIndex(s.cfg.clusterDomain(), s.cfg.Network)}
	s.current.Store(h)
	if s.cfg.Debug != "" {
		stop, err := s.serveDebug(s.cfg.Debug)
		if err != nil {
			log.Errorf("%s: %v", s, err)
		} else {
			defer stop()
		}
	}
	if err := s.client.Run(ctx, h); err != nil {
		sink.Reject(err)
	}
}

// handler applies the pushes of one Run.
type handler struct {
	src  *Source
	sink source.Sink
	mu   sync.Mutex // guards idx against the debug endpoint's reads
	idx  *index
	// published is set once the sink has a snapshot from this handler: changes follow.
	published bool
}

var _ xds.Resumer = (*handler)(nil)

// Apply decodes each resource; the ones that fail are left as they were and named in the NACK,
// the rest applied.
func (h *handler) Apply(r *xds.Response) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := newTouched()
	var (
		bad  []string
		errs []error
	)
	for _, res := range r.Resources {
		w, s, err := decode(res)
		if err != nil {
			bad = append(bad, res.Name)
			errs = append(errs, fmt.Errorf("resource %q: %w", res.Name, err))
			continue
		}
		h.idx.put(res.Name, w, s, t)
	}
	for _, name := range r.Removed {
		h.idx.remove(name, t)
	}
	h.publish(t)
	if bad != nil {
		return &xds.Rejected{Names: bad, Err: errors.Join(errs...)}
	}
	return nil
}

func decode(res xds.Resource) (*Workload, *Service, error) {
	if res.Body == nil {
		return nil, nil, errors.New("empty resource")
	}
	if res.Body.TypeUrl != TypeURL {
		return nil, nil, fmt.Errorf("resource of type %q, want %s", res.Body.TypeUrl, TypeURL)
	}
	return DecodeAddress(res.Body.Value)
}

// publish hands the sink the hosts t touched (the whole table the first time, or to a sink that
// takes no changes), and updates the client addresses.
func (h *handler) publish(t *touched) {
	for a := range t.addrs {
		if ns, ok := h.idx.namespaceOf(a); ok {
			h.src.clients.Store(a, ns)
		} else {
			h.src.clients.Delete(a)
		}
	}
	cs, incremental := h.sink.(source.ChangeSink)
	switch {
	case !h.published || !incremental:
		h.sink.Publish(h.idx.all())
		h.published = true
	case len(t.hosts) > 0:
		cs.Change(h.idx.changes(t.hosts))
	}
	addr := h.src.cfg.Address
	resourcesGauge.WithLabelValues(addr, "workload").Set(float64(len(h.idx.workloads)))
	resourcesGauge.WithLabelValues(addr, "service").Set(float64(len(h.idx.services)))
}

func (h *handler) Rejected(err error) { h.sink.Reject(err) }

// Resume starts from what the previous instance's handler (before a Corefile reload) held; its
// table is already in the store, carried by source name.
func (h *handler) Resume(prev xds.Handler) {
	p, ok := prev.(*handler)
	if !ok {
		return
	}
	p.mu.Lock()
	idx := p.idx.clone()
	p.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.idx = idx
	for a := range h.idx.byAddr {
		if ns, ok := h.idx.namespaceOf(a); ok {
			h.src.clients.Store(a, ns)
		}
	}
}
