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

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

const pluginName = "meshdns"

var log = clog.NewWithPlugin(pluginName)

// MeshDNS is the plugin handler.
type MeshDNS struct {
	Next  plugin.Handler
	Zones []string
	Fall  fall.F

	view     *table.View
	store    *store
	counters answerCounters
}

// Name implements plugin.Handler.
func (m *MeshDNS) Name() string { return pluginName }

// Ready implements ready.Readiness: true once every source has delivered its first table.
func (m *MeshDNS) Ready() bool { return m.store.ready.Load() }

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

	match := t.Lookup(q.Name, m.view)
	if !match.Found() {
		if m.Fall.Through(q.Name) {
			m.counters.inc(server, outcomeFallthrough)
			return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
		}
		m.counters.inc(server, outcomeNXDomain)
		return write(w, newReply(r, dns.RcodeNameError, nil, t.SOA(zone)))
	}

	if fast, err := m.writeFast(w, r, t, match, zone); fast != outcomeNone {
		m.counters.inc(server, fast)
		return sent(q.Name, err)
	}
	answer, hasData := t.Answer(match, q.Name, q.Qtype)
	if hasData {
		m.counters.inc(server, outcomeHit)
		return write(w, newReply(r, dns.RcodeSuccess, answer, nil))
	}
	// A known name never goes upstream: without data of the asked type it is NODATA, not NXDOMAIN.
	m.counters.inc(server, outcomeNoData)
	if zone == "." {
		zone = match.Zone()
	}
	return write(w, newReply(r, dns.RcodeSuccess, answer, t.SOA(zone)))
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
