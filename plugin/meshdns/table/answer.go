package table

import (
	"slices"

	"github.com/miekg/dns"
)

// Answer returns the records that answer a question of type qtype for qname, and whether they hold
// data of that type (false means NODATA: reply NOERROR with Table.SOA in authority). Owner names are
// qname as asked, so clients that randomise case (DNS 0x20) get their case back.
func (t *Table) Answer(m Match, qname string, qtype uint16) ([]dns.RR, bool) {
	var out []dns.RR
	owner := qname
	n := m.n
	if m.target != "" {
		out = make([]dns.RR, 0, 1+len(n.wire)/wireA)
		out = append(out, &dns.CNAME{Hdr: t.header(qname, dns.TypeCNAME), Target: m.target})
		owner = m.target
		if qtype == dns.TypeCNAME {
			return out, true
		}
	}
	var more *nameMore
	if n != nil {
		more = n.extra()
	}
	switch {
	case n != nil && more.alias != "":
		// Every type is answered by the CNAME; the caller resolves its target (Match.Alias).
		return append(out, &dns.CNAME{Hdr: t.header(owner, dns.TypeCNAME), Target: more.alias}), true
	case n != nil && qtype == dns.TypeA && n.nA > 0:
		recs := make([]dns.A, n.nA)
		a := n.a()
		for i, j := range rotate(n, int(n.nA)) {
			recs[i] = dns.A{Hdr: t.header(owner, dns.TypeA), A: ip(a[j*wireA:], wireA)}
		}
		return appendRecords(out, recs), true
	case n != nil && qtype == dns.TypeAAAA && len(n.aaaa()) > 0:
		aaaa := n.aaaa()
		recs := make([]dns.AAAA, len(aaaa)/wireAAAA)
		for i, j := range rotate(n, len(recs)) {
			recs[i] = dns.AAAA{Hdr: t.header(owner, dns.TypeAAAA), AAAA: ip(aaaa[j*wireAAAA:], wireAAAA)}
		}
		return appendRecords(out, recs), true
	case n != nil && qtype == dns.TypeSRV && len(more.srv) > 0:
		recs := make([]dns.SRV, len(more.srv))
		for i, r := range more.srv {
			recs[i] = dns.SRV{Hdr: t.header(owner, dns.TypeSRV), Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: r.Target}
		}
		return appendRecords(out, recs), true
	case n != nil && qtype == dns.TypeTXT && len(more.txt) > 0:
		return append(out, &dns.TXT{Hdr: t.header(owner, dns.TypeTXT), Txt: more.txt}), true
	case n != nil && qtype == dns.TypeSOA && m.target == "" && t.isZone(n.host):
		return append(out, t.SOA(owner)), true // the apex of a zone we are the authority for
	case m.isReverse() && qtype == dns.TypePTR:
		hosts := m.ptrs
		if m.ptr != nil {
			hosts = []string{m.ptr.host}
		}
		recs := make([]dns.PTR, len(hosts))
		for i, h := range hosts {
			recs[i] = dns.PTR{Hdr: t.header(owner, dns.TypePTR), Ptr: h}
		}
		return appendRecords(out, recs), true
	}
	return out, false
}

// Additional returns the addresses of the targets of the SRV records in answer that the table holds,
// for the Additional section.
func (t *Table) Additional(answer []dns.RR, v *View) []dns.RR {
	var out []dns.RR
	var done []string
	for _, rr := range answer {
		srv, ok := rr.(*dns.SRV)
		if !ok || slices.Contains(done, srv.Target) {
			continue
		}
		done = append(done, srv.Target)
		m := t.Lookup(srv.Target, v)
		if m.n == nil || m.n.extra().alias != "" || m.target != "" {
			continue
		}
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if recs, ok := t.Answer(m, srv.Target, qtype); ok {
				out = append(out, recs...)
			}
		}
	}
	return out
}

// isZone reports whether host is the apex of a zone the table is authoritative for.
func (t *Table) isZone(host string) bool {
	if _, ok := t.zones[host]; ok {
		return true
	}
	if t.over != nil {
		_, ok := t.over.zones[host]
		return ok
	}
	return false
}

// SOA returns the SOA record that goes in the authority section of negative answers under zone.
func (t *Table) SOA(zone string) *dns.SOA {
	suffix := zone
	if zone == "." {
		suffix = "" // "ns.dns." rather than the invalid "ns.dns.."
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: t.ttl},
		Ns:      "ns.dns." + suffix,
		Mbox:    "hostmaster." + suffix,
		Serial:  t.serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  t.ttl,
	}
}

func (t *Table) header(owner string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: t.ttl}
}

// rotate yields the indexes of count records starting one further along at each call, so that
// clients taking the first address spread over all of them.
func rotate(n *name, count int) func(func(int, int) bool) {
	start := 0
	if count > 1 {
		start = int((n.next.Add(1) - 1) % uint32(count))
	}
	return func(yield func(int, int) bool) {
		for i := range count {
			if !yield(i, (start+i)%count) {
				return
			}
		}
	}
}

// appendRecords appends pointers into recs, one allocation for all of them rather than one each.
func appendRecords[T any, P interface {
	*T
	dns.RR
}](out []dns.RR, recs []T) []dns.RR {
	if out == nil {
		out = make([]dns.RR, 0, len(recs))
	}
	for i := range recs {
		out = append(out, P(&recs[i]))
	}
	return out
}
