package nds

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
)

// istiod shapes a sidecar's NameTable by what its namespace may see (exportTo, the namespace's
// Sidecar). A node-local resolver answers pods of many namespaces, so per namespace it subscribes
// as a sidecar of each namespace with pods on the node, over one connection, and publishes each
// namespace's entries visible to that namespace only: every client gets its own namespace's view.

var log = clog.NewWithPlugin("meshdns")

// clientConfig is the xDS client of namespace ns's subscription, over conn.
func (s *Source) clientConfig(ns string, conn grpc.ClientConnInterface) xds.Config {
	md := map[string]any{}
	for k, v := range s.cfg.metadataIn(ns) {
		md[k] = v
	}
	meta, _ := structpb.NewStruct(md) // strings only: cannot fail
	var creds credentials.PerRPCCredentials
	if s.cfg.TokenRequest && s.tokens != nil {
		creds = &namespaceToken{tokens: s.tokens, namespace: ns, serviceAccount: s.cfg.ServiceAccount, secure: s.cfg.CAFile != ""}
	}
	return xds.Config{
		Credentials: creds,
		Dial:        s.cfg.dial(),
		Name:        "nds " + s.cfg.Address + " namespace " + ns,
		Node:        &core.Node{Id: s.cfg.nodeIDIn(ns), Cluster: s.cfg.Cluster, Metadata: meta},
		TypeURL:     TypeURL,
		Delta:       s.cfg.Delta,
		Metrics:     metrics,
		Conn:        conn,
	}
}

// perNamespace is the state of one per-namespace Run. Each subscription applies its pushes on its
// own goroutine; mu orders them, and what is sent to the sink.
type perNamespace struct {
	src  *Source
	sink source.Sink
	ctx  context.Context
	conn grpc.ClientConnInterface
	wg   sync.WaitGroup

	mu     sync.Mutex
	subs   map[string]*subscription
	wanted map[string]bool
	// tables holds each namespace's last table by canonical host, once its first came; hosts what
	// was published for each host: the namespaces' entries folded (see fold).
	tables map[string]map[string][]table.Entry
	hosts  map[string][]table.Entry
	// armed: the namespaces present at the start are known; waiting: those of them without a first
	// table yet. The first snapshot goes out when armed and none waits; changes follow.
	armed     bool
	waiting   map[string]bool
	published bool
}

// subscription is one namespace's stream, and the timer closing it once it has no clients.
type subscription struct {
	cancel  context.CancelFunc
	closing *time.Timer
}

func (s *Source) runPerNamespace(ctx context.Context, sink source.Sink) {
	d := s.cfg.dial()
	conn, err := d.Connect()
	if err != nil {
		sink.Reject(err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	p := &perNamespace{src: s, sink: sink, ctx: ctx, conn: conn, subs: map[string]*subscription{},
		tables: map[string]map[string][]table.Entry{}, hosts: map[string][]table.Entry{}}
	defer func() {
		cancel()
		p.mu.Lock()
		for _, sub := range p.subs {
			if sub.closing != nil {
				sub.closing.Stop()
			}
		}
		p.mu.Unlock()
		p.wg.Wait()
		subscriptionsGauge.WithLabelValues(s.cfg.Address).Sub(float64(len(p.subs)))
	}()
	fixed := slices.Clone(s.cfg.Namespaces)
	if s.cfg.Namespace != "" && !slices.Contains(fixed, s.cfg.Namespace) {
		// The block's own namespace: the view of clients the clients source does not know.
		fixed = append(fixed, s.cfg.Namespace)
	}
	if !s.cfg.ClientNamespaces || s.clients == nil {
		p.want(fixed, true)
		<-ctx.Done()
		return
	}
	for {
		namespaces, synced, changed := s.clients.ClientNamespaces()
		p.want(append(slices.Clone(fixed), namespaces...), synced)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// want makes the open subscriptions those of namespaces: it opens the missing ones, and closes the
// others after the grace period unless they are wanted again by then. Once synced, readiness waits
// for the first table of every namespace wanted then.
func (p *perNamespace) want(namespaces []string, synced bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wanted = map[string]bool{}
	for _, ns := range namespaces {
		p.wanted[ns] = true
		if sub, ok := p.subs[ns]; ok {
			if sub.closing != nil {
				sub.closing.Stop()
				sub.closing = nil
			}
			continue
		}
		p.open(ns)
	}
	for ns, sub := range p.subs {
		if !p.wanted[ns] && sub.closing == nil {
			sub.closing = time.AfterFunc(p.src.cfg.grace(), func() { p.closeIfUnwanted(ns, sub) })
		}
	}
	if synced && !p.armed {
		p.armed = true
		p.waiting = map[string]bool{}
		for ns := range p.wanted {
			if p.tables[ns] == nil {
				p.waiting[ns] = true
			}
		}
		p.maybePublish()
	}
}

// open starts namespace ns's subscription. The caller holds mu.
func (p *perNamespace) open(ns string) {
	client, err := xds.New(p.src.clientConfig(ns, p.conn))
	if err != nil { // the settings were checked by New: not expected
		p.sink.Reject(err)
		return
	}
	if p.src.retry != (xds.Backoff{}) {
		client.Retry = p.src.retry
	}
	ctx, cancel := context.WithCancel(p.ctx)
	sub := &subscription{cancel: cancel}
	p.subs[ns] = sub
	subscriptionsGauge.WithLabelValues(p.src.cfg.Address).Inc()
	log.Infof("nds %s: subscribing for namespace %s as %s", p.src.cfg.Address, ns, client.NodeID())
	h := newHandler(func(entries []table.Entry) { p.applied(ns, sub, entries) }, p.sink.Reject)
	h.skipSame = true
	h.changes(func(hosts map[string][]table.Entry, _ int) { p.changedIn(ns, sub, hosts) })
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := client.Run(ctx, h); err != nil {
			p.sink.Reject(err)
		}
	}()
}

// closeIfUnwanted closes sub, namespace ns's subscription, unless it was wanted again meanwhile,
// and takes its entries out.
func (p *perNamespace) closeIfUnwanted(ns string, sub *subscription) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.subs[ns] != sub || p.wanted[ns] || p.ctx.Err() != nil {
		return
	}
	sub.cancel()
	delete(p.subs, ns)
	subscriptionsGauge.WithLabelValues(p.src.cfg.Address).Dec()
	log.Infof("nds %s: namespace %s has no clients left: subscription closed", p.src.cfg.Address, ns)
	old := p.tables[ns]
	delete(p.tables, ns)
	if p.waiting[ns] {
		delete(p.waiting, ns)
		p.maybePublish()
	}
	if p.published && len(old) > 0 {
		p.change(slices.Collect(maps.Keys(old)))
	}
}

// applied takes a table of namespace ns from its subscription sub.
func (p *perNamespace) applied(ns string, sub *subscription, entries []table.Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.subs[ns] != sub {
		return // closed while this push was applied
	}
	old := p.tables[ns]
	next := table.GroupByHost(entries)
	p.tables[ns] = next
	if !p.published {
		delete(p.waiting, ns)
		p.maybePublish()
		return
	}
	if changes := table.Changes(old, next); len(changes) > 0 {
		p.change(slices.Collect(maps.Keys(changes)))
	}
}

// changedIn takes the hosts a push of namespace ns changed (their entries, none when gone) from its
// subscription sub, after its first table (applied).
func (p *perNamespace) changedIn(ns string, sub *subscription, hosts map[string][]table.Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tables[ns]
	if p.subs[ns] != sub || !ok {
		return // closed while this push was applied
	}
	for h, es := range hosts {
		if len(es) == 0 {
			delete(t, h)
		} else {
			t[h] = es
		}
	}
	if p.published {
		p.change(slices.Collect(maps.Keys(hosts)))
	}
}

// maybePublish sends the first snapshot once every namespace readiness waits for has its table.
// The caller holds mu.
func (p *perNamespace) maybePublish() {
	if p.published || !p.armed || len(p.waiting) > 0 {
		return
	}
	order := p.order()
	for _, t := range p.tables {
		for h := range t {
			if _, ok := p.hosts[h]; !ok {
				p.hosts[h] = p.fold(h, order)
			}
		}
	}
	p.published = true
	p.publish()
}

// change folds hosts again and sends them: as changes when the sink takes them, so that one
// namespace's push costs what it changed, else as a whole snapshot. The caller holds mu.
func (p *perNamespace) change(hosts []string) {
	order := p.order()
	out := make(map[string][]table.Entry, len(hosts))
	for _, h := range hosts {
		es := p.fold(h, order)
		if len(es) == 0 {
			delete(p.hosts, h)
		} else {
			p.hosts[h] = es
		}
		out[h] = es
	}
	cs, ok := p.sink.(source.ChangeSink)
	if !ok {
		p.publish()
		return
	}
	cs.Change(out)
	entriesGauge.WithLabelValues(p.src.cfg.Address).Set(float64(len(p.hosts)))
}

// publish sends every host's entries, in host order. The caller holds mu.
func (p *perNamespace) publish() {
	out := make([]table.Entry, 0, len(p.hosts))
	for _, h := range slices.Sorted(maps.Keys(p.hosts)) {
		out = append(out, p.hosts[h]...)
	}
	p.sink.Publish(out)
	entriesGauge.WithLabelValues(p.src.cfg.Address).Set(float64(len(p.hosts)))
}

// order is the namespaces with a table, sorted: the order their entries are folded in.
func (p *perNamespace) order() []string { return slices.Sorted(maps.Keys(p.tables)) }

// fold is canonical host h's entries over every namespace in order, each visible to its own
// namespace, merged as the table merges variants: copies alike but for visibility become one entry
// with every such namespace in VisibleTo, so that a name every namespace sees costs one entry, not
// one per namespace; copies that differ stay variants. The caller holds mu.
func (p *perNamespace) fold(h string, order []string) []table.Entry {
	var copies []table.Entry
	for _, ns := range order {
		for _, e := range p.tables[ns][h] {
			e.VisibleTo, e.HiddenFrom = []string{ns}, nil
			copies = append(copies, e)
		}
	}
	return table.Merge(copies)
}

// namespaceToken sends a token of namespace's ServiceAccount on each stream, made when none is held
// or the one held is past half its life, so a stream opened at any time has one valid for a while.
type namespaceToken struct {
	tokens                    source.Tokens
	namespace, serviceAccount string
	secure                    bool

	mu      sync.Mutex
	token   string
	made    time.Time
	expires time.Time
}

func (t *namespaceToken) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); t.token == "" || now.After(t.made.Add(t.expires.Sub(t.made)/2)) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tok, exp, err := t.tokens.Token(ctx, t.namespace, t.serviceAccount, TokenAudience)
		if err != nil {
			return nil, err
		}
		t.token, t.made, t.expires = tok, now, exp
	}
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

// RequireTransportSecurity is false on plaintext connections, as for a token file.
func (t *namespaceToken) RequireTransportSecurity() bool { return t.secure }
