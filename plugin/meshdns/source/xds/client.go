package xds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/pace"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

var log = clog.NewWithPlugin("meshdns")

// Config is one subscription: where, as whom, to what.
type Config struct {
	Dial
	// Name is the source in logs, such as "nds 127.0.0.1:15010".
	Name    string
	Node    *core.Node
	TypeURL string
	// Delta uses incremental xDS (DeltaAggregatedResources) rather than state of the world.
	Delta bool
	// Subscribe is the resource_names_subscribe of a delta stream's first request; none is a
	// wildcard subscription to istiod, and "*" an explicit one.
	Subscribe []string
	// Carry, when set, keeps the resource versions applied, and the handler's state when it is a
	// Resumer, under this key for the next client with the same key: the one a Corefile reload makes.
	Carry   string
	Metrics *Metrics
	// Conn, when set, is the connection the streams use (made with Dial.Connect), shared with other
	// clients of the same control plane: several subscriptions, one TCP connection. Run leaves it open.
	Conn grpc.ClientConnInterface
	// Credentials, when set, are sent on every stream of this client (a token of its own, when the
	// connection is shared by clients presenting different nodes).
	Credentials credentials.PerRPCCredentials
}

// Resource is one resource of a response. Name and Version are empty in state of the world.
type Resource struct {
	Name, Version string
	Body          *anypb.Any
}

// Response is one push as a Handler sees it.
type Response struct {
	Delta bool
	// Version is the response's version_info (state of the world) or system_version_info (delta).
	Version   string
	Resources []Resource
	// Removed are the names of the resources removed (delta only).
	Removed []string
}

// Handler applies pushes. Apply runs on the client's goroutine, one response at a time; its error
// NACKs the push, and the versions of what it did not apply are not recorded, so the control plane
// sends those resources again on the next stream. Rejected is told of every NACK with its reason
// (the push's version and Apply's error, or a response of the wrong type), the text the control
// plane gets.
type Handler interface {
	// Apply applies a push. The bytes of its resources are valid only until it returns: a state of
	// the world stream's are gRPC's receive buffer, reused for the next push (responseCodec).
	Apply(*Response) error
	Rejected(err error)
}

// Rejected is the error of a delta push that was applied except for the resources it names.
type Rejected struct {
	Names []string
	Err   error
}

func (r *Rejected) Error() string { return r.Err.Error() }
func (r *Rejected) Unwrap() error { return r.Err }

// Resumer is a Handler whose state can outlive its client: the handler of the next client with the
// same Carry key is given the previous one, once, before its first stream, to copy its state from.
// Its client then tells the control plane the versions it holds, and a reload costs no resend.
type Resumer interface {
	Handler
	Resume(prev Handler)
}

// Client keeps one subscription to a control plane open.
type Client struct {
	cfg   Config
	opts  []grpc.DialOption
	Retry Backoff
}

// New checks cfg's credentials settings; nothing connects until Run.
func New(cfg Config) (*Client, error) {
	if cfg.Metrics == nil || cfg.Node == nil || cfg.TypeURL == "" {
		return nil, errors.New("xds: a client needs metrics, a node and a type")
	}
	opts, err := cfg.Dial.options()
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, opts: opts, Retry: Backoff{Base: DefaultBackoffBase, Max: DefaultBackoffMax}}, nil
}

// NodeID is the node id the client presents.
func (c *Client) NodeID() string { return c.cfg.Node.Id }

// carry is what a client leaves for its successor; mu is held while its handler applies a push, so a
// successor copies versions and state that agree.
type carry struct {
	mu       sync.Mutex
	version  string
	versions map[string]string
	handler  Handler
}

var carried sync.Map // Config.Carry -> *carry

// state is what survives a reconnection: what was applied last, so the new stream can say so.
type state struct {
	*carry
	connected bool
}

// Run keeps a stream open, reconnecting with backoff after any error, until ctx ends. It returns an
// error only when the address cannot be used at all.
func (c *Client) Run(ctx context.Context, h Handler) error {
	st := &state{carry: &carry{versions: map[string]string{}, handler: h}}
	if c.cfg.Carry != "" {
		if v, ok := carried.Load(c.cfg.Carry); ok {
			if r, ok := h.(Resumer); ok {
				prev := v.(*carry)
				prev.mu.Lock()
				st.version, st.versions = prev.version, maps.Clone(prev.versions)
				r.Resume(prev.handler)
				prev.mu.Unlock()
			}
		}
		carried.Store(c.cfg.Carry, st.carry)
	}
	defer c.disconnected(st)
	conn := c.cfg.Conn
	if conn == nil {
		own, err := grpc.NewClient(c.cfg.Address, c.opts...)
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", c.cfg.Address, err)
		}
		defer own.Close()
		conn = own
	}
	client := discovery.NewAggregatedDiscoveryServiceClient(conn)
	failing := false
	for {
		var err error
		if c.cfg.Delta {
			err = c.runDelta(ctx, client, h, st)
		} else {
			err = c.runSotW(ctx, client, h, st)
		}
		if ctx.Err() != nil {
			return nil
		}
		// Log changes of state, not every attempt: losing a connection, then the first failure.
		if st.connected {
			log.Warningf("%s: stream lost, serving the last table while reconnecting: %v", c.cfg.Name, err)
			c.disconnected(st)
			c.Retry.Reset()
		} else if !failing {
			switch status.Code(err) {
			case codes.PermissionDenied, codes.Unauthenticated:
				// istiod's answer to a token of another namespace than the node's, or none on 15012.
				log.Warningf("%s: the control plane refused the stream (the credentials, or the node's namespace), retrying with backoff: %v", c.cfg.Name, err)
			default:
				log.Warningf("%s: cannot reach the control plane, retrying with backoff: %v", c.cfg.Name, err)
			}
		}
		failing = true
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.Retry.Next()):
		}
	}
}

// pushed records a push that reached the client, applied or not, and the connection it proves.
// The gauge counts connected streams, so that the old and the new instance of a reload, briefly
// both connected to the same address, do not overwrite each other's state.
func (c *Client) pushed(st *state) {
	if !st.connected {
		st.connected = true
		c.cfg.Metrics.Connected.WithLabelValues(c.cfg.Address).Inc()
		log.Infof("%s: connected as %s", c.cfg.Name, c.cfg.Node.Id)
	}
}

func (c *Client) disconnected(st *state) {
	if st.connected {
		st.connected = false
		c.cfg.Metrics.Connected.WithLabelValues(c.cfg.Address).Dec()
	}
}

// apply hands resp, of type typeURL, to h and returns the NACK's error detail, nil for an ACK, with
// record called to note what was applied. The carry's lock is held throughout (see carry).
func (c *Client) apply(h Handler, st *state, typeURL string, resp *Response, record func(err error)) *rpcstatus.Status {
	var err error
	if typeURL != c.cfg.TypeURL {
		err = fmt.Errorf("unexpected type %q", typeURL)
	} else {
		st.mu.Lock()
		err = h.Apply(resp)
		record(err)
		st.mu.Unlock()
	}
	if err != nil {
		if resp.Delta {
			err = fmt.Errorf("delta push %q: %w", resp.Version, err)
		} else {
			err = fmt.Errorf("push version %q: %w", resp.Version, err)
		}
		h.Rejected(err)
		c.cfg.Metrics.Pushes.WithLabelValues(c.cfg.Address, "rejected").Inc()
		return &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
	}
	c.Retry.Reset()
	c.cfg.Metrics.Pushes.WithLabelValues(c.cfg.Address, "applied").Inc()
	c.cfg.Metrics.clock.mark(c.cfg.Address)
	return nil
}

func (c *Client) callOptions() []grpc.CallOption {
	if c.cfg.Credentials == nil {
		return nil
	}
	return []grpc.CallOption{grpc.PerRPCCredentials(c.cfg.Credentials)}
}

func (c *Client) runSotW(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, h Handler, st *state) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	codec := newResponseCodec()
	defer codec.release()
	stream, err := client.StreamAggregatedResources(ctx, append(c.callOptions(), grpc.ForceCodecV2(codec))...)
	if err != nil {
		return err
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: c.cfg.Node, TypeUrl: c.cfg.TypeURL, VersionInfo: st.version}); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		pace.Check() // after decoding a whole table
		c.pushed(st)
		r := &Response{Version: resp.VersionInfo, Resources: make([]Resource, len(resp.Resources))}
		for i, a := range resp.Resources {
			r.Resources[i].Body = a
		}
		detail := c.apply(h, st, resp.TypeUrl, r, func(err error) {
			if err == nil {
				st.version = resp.VersionInfo
			}
		})
		// A NACK names the version still in use.
		ack := &discovery.DiscoveryRequest{TypeUrl: c.cfg.TypeURL, ResponseNonce: resp.Nonce, VersionInfo: st.version, ErrorDetail: detail}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

func (c *Client) runDelta(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, h Handler, st *state) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.DeltaAggregatedResources(ctx, c.callOptions()...)
	if err != nil {
		return err
	}
	st.mu.Lock()
	first := &discovery.DeltaDiscoveryRequest{Node: c.cfg.Node, TypeUrl: c.cfg.TypeURL,
		ResourceNamesSubscribe: c.cfg.Subscribe, InitialResourceVersions: maps.Clone(st.versions)}
	st.mu.Unlock()
	if err := stream.Send(first); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		c.pushed(st)
		r := &Response{Delta: true, Version: resp.SystemVersionInfo, Removed: resp.RemovedResources,
			Resources: make([]Resource, len(resp.Resources))}
		for i, res := range resp.Resources {
			r.Resources[i] = Resource{Name: res.Name, Version: res.Version, Body: res.Resource}
		}
		detail := c.apply(h, st, resp.TypeUrl, r, func(err error) { recordDelta(st.versions, r, err) })
		ack := &discovery.DeltaDiscoveryRequest{TypeUrl: c.cfg.TypeURL, ResponseNonce: resp.Nonce, ErrorDetail: detail}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// recordDelta notes the versions of what a delta push changed, except what err says was not applied.
func recordDelta(versions map[string]string, r *Response, err error) {
	var skip map[string]bool
	if err != nil {
		var rej *Rejected
		if !errors.As(err, &rej) {
			return // nothing applied
		}
		skip = make(map[string]bool, len(rej.Names))
		for _, n := range rej.Names {
			skip[n] = true
		}
	}
	for _, res := range r.Resources {
		if !skip[res.Name] {
			versions[res.Name] = res.Version
		}
	}
	for _, n := range r.Removed {
		if !skip[n] {
			delete(versions, n)
		}
	}
}
