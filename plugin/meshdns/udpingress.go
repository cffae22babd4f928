package meshdns

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin/metrics/vars"

	"github.com/meshdns/meshdns/plugin/meshdns/ingress"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The batched UDP path: when a block's UDP listener starts, meshdns puts an ingress.Ingress on its
// address, which answers what the table answers from bytes and hands every other datagram to the
// listener's CoreDNS server. It does so only where skipping CoreDNS's per-query path changes nothing
// a client or an operator sees: the address is a specific one (bind), every zone the answer could be
// routed to on it is this block's alone (no view, no other block's more specific zone), and the
// plugins above meshdns in the block are ones that do nothing to an answer meshdns writes (errors)
// or that this path does itself (prometheus: its request metrics are reported from here). Otherwise
// the listener stays CoreDNS's, and the log says why.

// transparentAbove are the plugins that may run before meshdns without turning the path off.
var transparentAbove = map[string]bool{"errors": true, "prometheus": true}

// udpIngresses are one MeshDNS's batched listeners, by CoreDNS server address.
type udpIngresses struct {
	mu      sync.Mutex
	off     bool // shut down: no listener gets an ingress any more
	byAddr  map[string]*ingress.Ingress
	decided map[string]bool
}

// decorate is the block's dnsserver.Config.UDPDecorateWriterFunc: CoreDNS calls it as each UDP
// listener starts serving, which is when the server and its routing are complete. It decorates
// nothing itself, and keeps a decorator set before it (the shed plugin's).
func (m *MeshDNS) decorate(cfg *dnsserver.Config, previous func(*dnsserver.Server) dns.DecorateWriter) func(*dnsserver.Server) dns.DecorateWriter {
	return func(s *dnsserver.Server) dns.DecorateWriter {
		m.attach(s, cfg)
		if previous != nil {
			return previous(s)
		}
		return nil
	}
}

// attach puts an ingress on s's address once (multisocket starts several servers on one address).
func (m *MeshDNS) attach(s *dnsserver.Server, cfg *dnsserver.Config) {
	u := &m.udp
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.off || u.decided[s.Addr] {
		return
	}
	if u.decided == nil {
		u.decided, u.byAddr = map[string]bool{}, map[string]*ingress.Ingress{}
	}
	u.decided[s.Addr] = true
	route, why := routeOf(s, cfg)
	if why == "" {
		why = pluginAbove(cfg)
	}
	if why != "" {
		log.Infof("batched UDP path off for %s: %s", s.Addr, why)
		return
	}
	l := newUDPListener(m, s.Addr, route)
	counts := ingressCounts(s.Addr)
	if cfg.Handler("prometheus") != nil {
		l.metrics = &requestMetrics{server: s.Addr}
		counts.Latency = batchedLatency.of(s.Addr)
	}
	g, err := ingress.Listen(strings.TrimPrefix(s.Addr, "dns://"), l.respond, chainHandler(s), s.TsigSecret, counts)
	if err != nil {
		log.Warningf("batched UDP path off for %s: %v", s.Addr, err)
		return
	}
	u.byAddr[s.Addr] = g
	log.Infof("batched UDP path on for %s", s.Addr)
}

// closeUDP closes every ingress, handing their addresses back to CoreDNS's listeners.
func (m *MeshDNS) closeUDP() {
	u := &m.udp
	u.mu.Lock()
	u.off = true
	all := u.byAddr
	u.byAddr = nil
	u.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range all {
		wg.Go(func() { g.Close() })
	}
	wg.Wait()
}

// chainHandler serves a datagram as CoreDNS's own UDP server does.
func chainHandler(s *dnsserver.Server) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		ctx := context.WithValue(context.Background(), dnsserver.Key{}, s)
		ctx = context.WithValue(ctx, dnsserver.LoopKey{}, 0)
		s.ServeDNS(ctx, w, r)
	})
}

// pluginAbove names the first plugin before meshdns in cfg's chain that must see every query.
func pluginAbove(cfg *dnsserver.Config) string {
	for _, h := range cfg.Handlers() { // in chain order
		if h.Name() == pluginName {
			return ""
		}
		if !transparentAbove[h.Name()] {
			return fmt.Sprintf("%s runs before meshdns and must see every query", h.Name())
		}
	}
	return ""
}

// zoneRoute is which zones of an address route queries to this block: CoreDNS gives a query to the
// longest zone on the address that holds it, or to the root zone.
type zoneRoute struct {
	zones   map[string]routedZone // every zone on the address, by its lower-case name
	lengths []int                 // the lengths of their names but the root's, longest first
}

type routedZone struct {
	name string // the zone's own string: what zone returns, so that no piece of a qname outlives it
	ours bool   // only this block serves it
}

// set records that queries in zone route to this block alone (ours) or not.
func (r *zoneRoute) set(zone string, ours bool) {
	if r.zones == nil {
		r.zones = map[string]routedZone{}
	}
	r.zones[zone] = routedZone{name: zone, ours: ours}
	if zone != "." && !slices.Contains(r.lengths, len(zone)) {
		r.lengths = append(r.lengths, len(zone))
		slices.SortFunc(r.lengths, func(a, b int) int { return b - a })
	}
}

// zone is the zone qname (a name without escapes, as parseQuery reads) routes to, and whether that
// zone is this block's alone. It does not allocate, whatever the qname's case, and looks up only
// the suffixes of qname as long as a zone's name (with only the root zone, none).
func (r *zoneRoute) zone(qname string) (string, bool) {
	for _, n := range r.lengths {
		start := len(qname) - n
		if start < 0 || start > 0 && qname[start-1] != '.' {
			continue // shorter than the zone, or not at a label's start
		}
		var buf [maxNameWire + 1]byte
		lower := append(buf[:0], qname[start:]...)
		for i, c := range lower {
			if 'A' <= c && c <= 'Z' {
				lower[i] = c + 'a' - 'A'
			}
		}
		if z, ok := r.zones[string(lower)]; ok { // a map index by converted bytes copies nothing
			return z.name, z.ours
		}
	}
	return ".", r.zones["."].ours
}

// routeOf reads which zones s routes to which blocks. CoreDNS keeps that unexported
// (dnsserver.Server.zones), so it is read by reflection; a CoreDNS that changed it turns the path
// off (TestRouteOfReadsThisCoreDNS pins it), as do listener features the path does not reproduce.
func routeOf(s *dnsserver.Server, cfg *dnsserver.Config) (*zoneRoute, string) {
	if cfg.Transport != "dns" {
		return nil, "not a dns:// listener"
	}
	v := reflect.ValueOf(s).Elem()
	zones, opcodes := v.FieldByName("zones"), v.FieldByName("allowedOpcodes")
	if zones.Kind() != reflect.Map || opcodes.Kind() != reflect.Map || zones.Type().Elem() != reflect.TypeFor[[]*dnsserver.Config]() {
		return nil, "this CoreDNS does not show how its server routes zones"
	}
	if opcodes.Len() > 0 {
		return nil, "a plugin accepts opcodes other than QUERY and NOTIFY"
	}
	if !isNilField(v, "connPolicy") {
		return nil, "the listener reads PROXY protocol headers"
	}
	plugins := reflect.ValueOf(cfg.Plugin).Pointer() // the blocks's configs share its plugin list
	route := &zoneRoute{}
	anyOurs := false
	for _, zone := range zones.MapKeys() {
		configs := zones.MapIndex(zone)
		ours := configs.Len() == 1
		if ours {
			c := configs.Index(0).Elem()
			ours = c.FieldByName("Plugin").Pointer() == plugins && c.FieldByName("FilterFuncs").Len() == 0 &&
				c.FieldByName("ViewName").String() == "" && isNilField(c, "metaCollector")
		}
		route.set(zone.String(), ours)
		anyOurs = anyOurs || ours
	}
	if !anyOurs {
		return nil, "every zone of this block shares it with a view or another block"
	}
	return route, ""
}

// isNilField reports whether v's field name exists and is nil.
func isNilField(v reflect.Value, name string) bool {
	f := v.FieldByName(name)
	switch f.Kind() {
	case reflect.Interface, reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice:
		return f.IsNil()
	}
	return false
}

// udpListener answers one address's datagrams from the table.
type udpListener struct {
	m       *MeshDNS
	server  string // CoreDNS's name for the listener, the metrics' server label
	route   *zoneRoute
	answers *[numOutcomes]prometheus.Counter // the server's, resolved once rather than by each answer
	metrics *requestMetrics                  // nil without the prometheus plugin
}

func newUDPListener(m *MeshDNS, server string, route *zoneRoute) *udpListener {
	return &udpListener{m: m, server: server, route: route, answers: m.counters.of(server)}
}

// respond is the ingress's Respond: ServeDNS's fast path from bytes, hits and negative answers
// alike. What it declines (a name passed on to the next plugin, an alias, a search-domain CNAME,
// EDNS options, a reply too large) the chain serves.
func (l *udpListener) respond(out, query []byte, client netip.AddrPort) ([]byte, bool) {
	var text [maxNameWire]byte // the qname's text, on the stack: q.name lives no longer than this call
	q, ok := parseQuery(query, &text)
	if !ok {
		return out, false
	}
	serverZone, ours := l.route.zone(q.name)
	if !ours {
		return out, false
	}
	m := l.m
	zone := plainZones(m.Zones).matches(q.name)
	if zone == "" {
		return out, false
	}
	t := m.store.table()
	if t == nil {
		return out, false
	}
	var start time.Time // the request duration is only reported with the prometheus plugin
	if l.metrics != nil {
		start = time.Now()
	}
	match := t.Lookup(q.name, m.viewFor(client.Addr().Unmap()))
	if !match.Found() && !match.NXDomain() && plainZones(m.Fall.Zones).matches(q.name) != "" {
		return out, false // the next plugin's (forward)
	}
	reply, result := appendReply(out, &q, t, match, soaZone(match, zone), true)
	if result == outcomeNone {
		return out, false
	}
	l.answers[result].Inc()
	if l.metrics != nil {
		l.metrics.report(serverZone, client.Addr(), &q, result == outcomeNXDomain, len(query), len(reply), start)
	}
	return reply, true
}

// plainZones are zones as the plugin keeps them, lower-case and fully qualified, matched against
// names without escapes (as parseQuery reads them) without allocating: plugin.Zones does the same
// through dns.CompareDomainName, which splits both names into new slices for any zone but the root.
type plainZones []string

// matches is plugin.Zones.Matches: the longest of the zones that holds qname, or "".
func (zs plainZones) matches(qname string) string {
	best := ""
	for _, z := range zs {
		if len(z) > len(best) && inZone(qname, z) {
			best = z
		}
	}
	return best
}

// inZone reports whether qname is zone or a name below it, letter case aside.
func inZone(qname, zone string) bool {
	if zone == "." {
		return true
	}
	start := len(qname) - len(zone)
	return (start == 0 || start > 0 && qname[start-1] == '.') && strings.EqualFold(qname[start:], zone)
}

// requestMetrics reports a query answered on the batched path in CoreDNS's request metrics, as the
// prometheus plugin reports every query it sees (vars.Report), with the label values resolved once.
type requestMetrics struct {
	server string
	byZone sync.Map // zoneFamilyType -> *requestObservers
}

type zoneFamilyType struct {
	zone     string
	family   string
	qtype    uint16
	nxdomain bool // the reply's rcode: NXDOMAIN, or NOERROR
}

type requestObservers struct {
	count, do, rcode            prometheus.Counter
	duration, respSize, reqSize prometheus.Observer
}

func (r *requestMetrics) report(zone string, client netip.Addr, q *fastQuery, nxdomain bool, reqSize, respSize int, start time.Time) {
	family := "1"
	if client.Is6() && !client.Is4In6() {
		family = "2"
	}
	key := zoneFamilyType{zone, family, q.qtype, nxdomain}
	v, ok := r.byZone.Load(key)
	if !ok {
		const view = ""
		rcode := "NOERROR"
		if nxdomain {
			rcode = "NXDOMAIN"
		}
		v, _ = r.byZone.LoadOrStore(key, &requestObservers{
			count:    vars.RequestCount.WithLabelValues(r.server, zone, view, "udp", family, dns.Type(q.qtype).String()),
			do:       vars.RequestDo.WithLabelValues(r.server, zone, view),
			rcode:    vars.ResponseRcode.WithLabelValues(r.server, zone, view, rcode, pluginName),
			duration: vars.RequestDuration.WithLabelValues(r.server, zone, view),
			respSize: vars.ResponseSize.WithLabelValues(r.server, zone, view, "udp"),
			reqSize:  vars.RequestSize.WithLabelValues(r.server, zone, view, "udp"),
		})
	}
	o := v.(*requestObservers)
	if q.do {
		o.do.Inc()
	}
	o.count.Inc()
	o.duration.Observe(time.Since(start).Seconds())
	o.respSize.Observe(float64(respSize))
	o.reqSize.Observe(float64(reqSize))
	o.rcode.Inc()
}
