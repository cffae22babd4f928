package table

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// Sizes of an A and an AAAA record in a reply whose owner is the question's name, written as a
// compression pointer to it (offset 12): pointer, type, class, TTL, length, address.
const (
	wireA    = 2 + 2 + 2 + 4 + 2 + 4
	wireAAAA = 2 + 2 + 2 + 4 + 2 + 16
)

// packRecords prepacks the A and AAAA records of n for the table's TTL at the end of slab, which
// has room for them, and returns the slab; n's records share its memory.
func (t *Table) packRecords(n *name, slab []byte) []byte {
	start := len(slab)
	for _, ip := range n.v4 {
		slab = appendRecord(slab, dns.TypeA, t.ttl, ip)
	}
	n.wire4 = slab[start:len(slab):len(slab)]
	start = len(slab)
	for _, ip := range n.v6 {
		slab = appendRecord(slab, dns.TypeAAAA, t.ttl, ip)
	}
	n.wire6 = slab[start:len(slab):len(slab)]
	return slab
}

func appendRecord(b []byte, rrtype uint16, ttl uint32, ip []byte) []byte {
	b = append(b, 0xc0, 0x0c) // owner: the question's name, as asked
	b = binary.BigEndian.AppendUint16(b, rrtype)
	b = binary.BigEndian.AppendUint16(b, dns.ClassINET)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ip)))
	return append(b, ip...)
}

// AppendWire appends the answer records of a direct hit in wire format, rotated as Answer rotates
// them, each owned by the question's name through a pointer to offset 12. It returns dst and the
// number of records, 0 when the match has no such records or needs more than this form (a CNAME,
// PTR records): then Answer builds the reply.
func (t *Table) AppendWire(dst []byte, m Match, qtype uint16) ([]byte, int) {
	if m.n == nil || m.target != "" || m.n.alias != "" {
		return dst, 0
	}
	var recs []byte
	size := 0
	switch qtype {
	case dns.TypeA:
		recs, size = m.n.wire4, wireA
	case dns.TypeAAAA:
		recs, size = m.n.wire6, wireAAAA
	}
	count := len(recs) / max(size, 1)
	if count == 0 {
		return dst, 0
	}
	start := 0
	if count > 1 {
		start = int((m.n.next.Add(1) - 1) % uint32(count))
	}
	dst = append(dst, recs[start*size:]...)
	dst = append(dst, recs[:start*size]...)
	return dst, count
}

// packSOA prepacks the SOA record of negative answers under zone: owner, server and mailbox names
// written out in full, the same record SOA builds.
func (t *Table) packSOA(zone string) []byte {
	buf := make([]byte, 3*(len(zone)+2)+64) // three names, the header and five numbers
	off, err := dns.PackRR(t.SOA(zone), buf, 0, nil, false)
	if err != nil {
		return nil // a zone that does not pack takes the dns.Msg path, which reports it
	}
	return buf[:off:off]
}

// AppendNoData appends the SOA of a negative answer about a direct match that has no record of
// type qtype, and reports whether it did: false for data, a CNAME or a reverse name, which
// AppendWire or Answer handle.
func (t *Table) AppendNoData(dst []byte, m Match, qtype uint16) ([]byte, bool) {
	if m.n == nil || m.target != "" || m.n.alias != "" || m.n.soa == nil {
		return dst, false
	}
	if t.hasData(m.n, qtype) {
		return dst, false
	}
	return append(dst, m.n.soa...), true
}

// hasData reports whether n has records of type qtype.
func (t *Table) hasData(n *name, qtype uint16) bool {
	switch qtype {
	case dns.TypeA:
		return len(n.v4) > 0
	case dns.TypeAAAA:
		return len(n.v6) > 0
	case dns.TypeSRV:
		return len(n.srv) > 0
	case dns.TypeTXT:
		return len(n.txt) > 0
	case dns.TypeSOA:
		return t.isZone(n.host)
	}
	return false
}
