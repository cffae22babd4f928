package table

import (
	"encoding/binary"
	"math"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Sizes of an A and an AAAA record in a reply whose owner is the question's name, written as a
// compression pointer to it (offset 12): pointer, type, class, TTL, length, address.
const (
	wireA    = 2 + 2 + 2 + 4 + 2 + 4
	wireAAAA = 2 + 2 + 2 + 4 + 2 + 16
)

// packRecords prepacks the A and then the AAAA records of addrs for the table's TTL at the end of
// slab, which has room for them, and returns the slab; n's records share its memory. Past 65535 A
// records (more than a 64 KiB reply could carry) the rest are left out.
func (t *Table) packRecords(n *name, addrs []netip.Addr, slab []byte) []byte {
	start := len(slab)
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() && n.nA < math.MaxUint16 {
			ip := a.As4()
			slab = appendRecord(slab, dns.TypeA, t.ttl, ip[:])
			n.nA++
		}
	}
	for _, a := range addrs {
		if a = a.Unmap(); a.Is6() {
			ip := a.As16()
			slab = appendRecord(slab, dns.TypeAAAA, t.ttl, ip[:])
		}
	}
	n.wire = slab[start:len(slab):len(slab)]
	return slab
}

// a and aaaa are n's prepacked A and AAAA records.
func (n *name) a() []byte    { return n.wire[:int(n.nA)*wireA] }
func (n *name) aaaa() []byte { return n.wire[int(n.nA)*wireA:] }

// ip is the address of the prepacked record at rec (its last bytes, after the 12 of the header).
func ip(rec []byte, size int) net.IP { return net.IP(rec[12:size:size]) }

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
	if m.n == nil || m.target != "" || m.n.extra().alias != "" {
		return dst, 0
	}
	var recs []byte
	size := 0
	switch qtype {
	case dns.TypeA:
		recs, size = m.n.a(), wireA
	case dns.TypeAAAA:
		recs, size = m.n.aaaa(), wireAAAA
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

// AppendNoData appends the SOA under zone of a negative answer about a direct match that has no
// record of type qtype, or about an empty non-terminal, and reports whether it did: false for data,
// a CNAME or a reverse name, which AppendWire or Answer handle. The SOA is written as AppendSOA
// writes it (at as there), or without at, when zone is the host's own, prepacked.
func (t *Table) AppendNoData(dst []byte, m Match, qtype uint16, zone string, at int) ([]byte, bool) {
	if m.n == nil {
		if !m.ent || m.target != "" {
			return dst, false
		}
		return t.AppendSOA(dst, zone, at)
	}
	if m.target != "" || m.n.extra().alias != "" || t.hasData(m.n, qtype) {
		return dst, false
	}
	if at == 0 && m.n.zone.soa != nil && m.n.zone.name == zone {
		return append(dst, m.n.zone.soa...), true
	}
	return t.AppendSOA(dst, zone, at)
}

// AppendSOA appends the record SOA(zone) returns in wire form and reports whether it did: false,
// with dst as it was, for a zone with escapes, which the dns.Msg path packs. With at > 0, zone's
// name is in the message already at offset at (dst[0] being the message's first byte), and the
// record's three names end in a pointer to it, as a server compressing its replies writes them;
// with 0 they are written in full, as packSOA does. It allocates nothing: negative answers about
// names outside the table are written with it.
func (t *Table) AppendSOA(dst []byte, zone string, at int) ([]byte, bool) {
	if len("hostmaster.")+len(zone)+1 > 255 { // the longest name SOA makes of zone, in wire form
		return dst, false
	}
	if zone == "." || at >= 0x4000 { // a pointer to the root is longer than the root; past 14 bits, none
		at = 0
	}
	start := len(dst)
	dst, ok := appendZoneName(dst, zone, at)
	if !ok {
		return dst[:start], false
	}
	dst = binary.BigEndian.AppendUint16(dst, dns.TypeSOA)
	dst = binary.BigEndian.AppendUint16(dst, dns.ClassINET)
	dst = binary.BigEndian.AppendUint32(dst, t.ttl)
	length := len(dst)
	dst = append(dst, 0, 0) // RDLENGTH, set below
	dst = append(dst, 2, 'n', 's', 3, 'd', 'n', 's')
	dst, _ = appendZoneName(dst, zone, at)
	dst = append(dst, 10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r')
	dst, _ = appendZoneName(dst, zone, at)
	for _, v := range [...]uint32{t.serial, 7200, 1800, 86400, t.ttl} { // as SOA fills them in
		dst = binary.BigEndian.AppendUint32(dst, v)
	}
	binary.BigEndian.PutUint16(dst[length:], uint16(len(dst)-length-2))
	return dst, true
}

// appendZoneName appends zone as a pointer to offset at, or without at (0) in full.
func appendZoneName(b []byte, zone string, at int) ([]byte, bool) {
	if at > 0 {
		return append(b, 0xc0|byte(at>>8), byte(at)), true
	}
	return AppendPlainName(b, zone)
}

// AppendPlainName appends name, fully qualified, in wire form without compression, and reports
// false for a name with escapes or empty or overlong labels, which dns.PackDomainName handles. The
// fast path packs its names with it too.
func AppendPlainName(b []byte, name string) ([]byte, bool) {
	if name == "." {
		return append(b, 0), true
	}
	if len(name) > 254 || !strings.HasSuffix(name, ".") || strings.IndexByte(name, '\\') >= 0 {
		return b, false
	}
	start := len(b)
	for rest := name; rest != ""; {
		dot := strings.IndexByte(rest, '.')
		if dot < 1 || dot > 63 {
			return b[:start], false
		}
		b = append(append(b, byte(dot)), rest[:dot]...)
		rest = rest[dot+1:]
	}
	return append(b, 0), true
}

// hasData reports whether n has records of type qtype.
func (t *Table) hasData(n *name, qtype uint16) bool {
	switch qtype {
	case dns.TypeA:
		return n.nA > 0
	case dns.TypeAAAA:
		return len(n.aaaa()) > 0
	case dns.TypeSRV:
		return len(n.extra().srv) > 0
	case dns.TypeTXT:
		return len(n.extra().txt) > 0
	case dns.TypeSOA:
		return t.isZone(n.host)
	}
	return false
}
