// Package meshdns is a CoreDNS plugin that answers service-mesh names from a name table fed by the
// mesh's control plane, and passes every other name to the next plugin.
package meshdns

import (
	"context"
	"fmt"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/fall"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/plugin/pkg/upstream"
	"github.com/coredns/coredns/request"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"
	"github.com/meshdns/meshdns/plugin/pkg/handover"

	"github.com/miekg/dns"
)

const pluginName = "meshdns"

var log = clog.NewWithPlugin(pluginName)

// self resolves names through this server's own plugin chain; it holds no state.
var self = upstream.New()

// MeshDNS is the plugin handler.
type MeshDNS struct {
	Next  plugin.Handler
	Zones []string
	Fall  fall.F

	view       *table.View      // the configured namespace's, for clients no source knows
	views      *views           // per client namespace
	clients    []source.Clients // sources that know client addresses
	store      *store
	counters   answerCounters
	udp        udpIngresses // the batched UDP path's listeners
	noBatchUDP bool         // batch_udp off
}

// Name implements plugin.Handler.
func (m *MeshDNS) Name() string { return pluginName }

// Ready implements ready.Readiness: true once every source has delivered its first table, and false
// again once the process is shutting down (with `ready { monitor continuously }`, which polls it).
func (m *MeshDNS) Ready() bool { return m.store.ready.Load() && !handover.Leaving() }

// ServeDNS implements plugin.Handler.
func (m *MeshDNS) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) != 1 || r.Question[0].Qclass != dns.ClassINET {
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	q := r.Question[0]
	zone := plugin.Zones(m.Zones).Matches(q.Name)
	if zone == "" {
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	server := metrics.WithServer(ctx)

	t := m.store.table()
	if t == nil {
		m.counters.inc(server, outcomeNotReady)
		if m.Fall.Through(q.Name) {
			return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
		}
		return dns.RcodeServerFailure, nil
	}

	view := m.viewOf(w)
	match := t.Lookup(q.Name, view)
	// Absent from a zone a source is the authority for (clusterset.local), even with fallthrough, or
	// from the plugin's zones without it: NXDOMAIN, never passed on.
	nxdomain := !match.Found() && (match.NXDomain() || !m.Fall.Through(q.Name))
	if !match.Found() && !nxdomain {
		m.counters.inc(server, outcomeFallthrough)
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	negZone := soaZone(match, zone)
	if fast, err := m.writeFast(w, r, t, match, negZone); fast != outcomeNone {
		m.counters.inc(server, fast)
		return sent(q.Name, err)
	}
	if nxdomain {
		m.counters.inc(server, outcomeNXDomain)
		return write(w, newReply(r, dns.RcodeNameError, nil, t.SOA(negZone)))
	}
	answer, hasData := t.Answer(match, q.Name, q.Qtype)
	if alias := match.Alias(); alias != "" && q.Qtype != dns.TypeCNAME {
		answer = append(answer, m.chase(ctx, w, r, t, view, alias)...)
	}
	if hasData {
		m.counters.inc(server, outcomeHit)
		reply := newReply(r, dns.RcodeSuccess, answer, nil)
		if q.Qtype == dns.TypeSRV {
			reply.Extra = t.Additional(answer, view)
		}
		return write(w, reply)
	}
	// A known name never goes upstream: without data of the asked type it is NODATA, not NXDOMAIN.
	m.counters.inc(server, outcomeNoData)
	return write(w, newReply(r, dns.RcodeSuccess, answer, t.SOA(negZone)))
}

// maxChase bounds a chain of aliases inside the table (ExternalName Services naming each other).
const maxChase = 8

// chase resolves the target of an alias for r's question type: from the table while the chain stays
// in it, then through the server itself (the plugins after us, normally forward), as CoreDNS's
// kubernetes plugin resolves ExternalName targets. It returns the records to append after the CNAME.
func (m *MeshDNS) chase(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, t *table.Table, view *table.View, target string) []dns.RR {
	qtype := r.Question[0].Qtype
	var out []dns.RR
	for range maxChase {
		match := t.Lookup(target, view)
		if !match.Found() {
			reply, err := self.Lookup(ctx, request.Request{W: w, Req: r}, target, qtype)
			if err != nil || reply == nil {
				return out
			}
			return append(out, reply.Answer...)
		}
		answer, _ := t.Answer(match, target, qtype)
		out = append(out, answer...)
		if target = match.Alias(); target == "" {
			return out
		}
	}
	return out
}

// newReply is the authoritative reply to r with rcode, answer and, for negative answers, an SOA.
func newReply(r *dns.Msg, rcode int, answer []dns.RR, soa *dns.SOA) *dns.Msg {
	reply := new(dns.Msg)
	reply.SetReply(r)
	reply.Authoritative = true
	reply.Rcode = rcode
	reply.Answer = answer
	if soa != nil {
		reply.Ns = []dns.RR{soa}
	}
	return reply
}

// write sends reply through the dns.Msg path.
func write(w dns.ResponseWriter, reply *dns.Msg) (int, error) {
	return sent(reply.Question[0].Name, w.WriteMsg(reply))
}

// sent turns the outcome of writing the reply to name into ServeDNS's result: a reply that cannot be
// sent is an error for the errors plugin to log.
func sent(name string, err error) (int, error) {
	if err != nil {
		return dns.RcodeServerFailure, fmt.Errorf("%s: writing the reply to %s: %w", pluginName, name, err)
	}
	return dns.RcodeSuccess, nil
}
