package meshdns

import (
	"encoding/binary"
	"reflect"
	"strings"
	"sync"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

// The fast path writes the reply to a direct A or AAAA hit as bytes: the header, the question as
// asked, the table's prepacked records, and the OPT record; and so the negative answers, NODATA
// and NXDOMAIN, with the zone's SOA. It skips building a dns.Msg and the
// two walks over it that the slow path pays for (the scrubber's size check and the packing, plus the
// metrics recorder's own size check). It is taken only when every writer between the server and
// this plugin is one that passes bytes through untouched and still records what it must.

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// terminalWriters are the server's own writers, recognised by type name: miekg/dns does not export
// its UDP/TCP writer, and the test writer stands in for it in unit tests.
var terminalWriters = map[string]bool{"*dns.response": true, "*test.ResponseWriter": true}

// passesBytes reports whether w, and every writer it wraps, is safe to Write raw bytes to.
func passesBytes(w dns.ResponseWriter) bool {
	for {
		switch x := w.(type) {
		case *request.ScrubWriter:
			w = x.ResponseWriter // it only scrubs in WriteMsg; the fast path checks the size itself
		case *metrics.Recorder:
			w = x.Recorder.ResponseWriter // counts bytes; a reply's rcode other than NOERROR is set in it (recordRcode)
		default:
			// Not the log or trace plugins' recorder either: they print the reply's flags from the
			// dns.Msg they record, which bytes would leave empty.
			return terminalWriters[reflect.TypeOf(w).String()]
		}
	}
}

// recordRcode sets rcode in the recorders among the writers passesBytes walks through, which read it
// only from a dns.Msg: the prometheus plugin reports each reply's rcode from its recorder.
func recordRcode(w dns.ResponseWriter, rcode int) {
	for {
		switch x := w.(type) {
		case *request.ScrubWriter:
			w = x.ResponseWriter
		case *metrics.Recorder:
			x.Rcode = rcode
			w = x.Recorder.ResponseWriter
		default:
			return
		}
	}
}

// soaZone is the owner of the SOA in a negative answer about match, asked in the plugin's zone: the
// authoritative zone a name is absent from, the name's own zone when the plugin's is the root, else
// the plugin's zone.
func soaZone(match table.Match, zone string) string {
	if match.NXDomain() || zone == "." && match.Found() {
		return match.Zone()
	}
	return zone
}

// fastQuery is what the fast path reads of a query: from its dns.Msg in ServeDNS, or straight from
// its datagram on the batched UDP path (parseQuery).
type fastQuery struct {
	id       uint16
	flags    uint16 // the reply's: QR, the opcode, AA, and the query's RD and CD
	question []byte // the question section as sent, or nil to pack name, qtype and qclass
	name     string
	qtype    uint16
	qclass   uint16
	edns     bool
	udpSize  uint16
	do       bool
}

// replyFlags are the header flags of an authoritative reply to a query with opcode, rd and cd.
func replyFlags(opcode int, rd, cd bool) uint16 {
	flags := uint16(1<<15 | uint16(opcode&0xf)<<11 | 1<<10) // QR, opcode, AA
	if rd {
		flags |= 1 << 8
	}
	if cd {
		flags |= 1 << 4
	}
	return flags
}

// writeFast answers r from the prepacked records of match: its addresses, or the SOA under negZone
// when it has none of the asked type, or, for a match that found nothing, NXDOMAIN with that SOA. It
// reports what it answered, or none (having written nothing) when this reply needs the slow path.
func (m *MeshDNS) writeFast(w dns.ResponseWriter, r *dns.Msg, t *table.Table, match table.Match, negZone string) (outcome, error) {
	opt := r.IsEdns0()
	if opt != nil && len(opt.Option) > 0 { // options (cookies, NSID) are for the slow path to echo
		return outcomeNone, nil
	}
	if !passesBytes(w) {
		return outcomeNone, nil
	}
	q := fastQuery{
		id:     r.Id,
		flags:  replyFlags(r.Opcode, r.RecursionDesired, r.CheckingDisabled),
		name:   r.Question[0].Name,
		qtype:  r.Question[0].Qtype,
		qclass: r.Question[0].Qclass,
	}
	if opt != nil {
		q.edns, q.udpSize, q.do = true, opt.UDPSize(), opt.Do()
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b, result := appendReply((*bp)[:0], &q, t, match, negZone, w.RemoteAddr().Network() == "udp")
	if result == outcomeNone {
		return outcomeNone, nil
	}
	*bp = b
	if result == outcomeNXDomain {
		recordRcode(w, dns.RcodeNameError)
	}
	_, err := w.Write(b)
	return result, err
}

// appendReply writes into b, which is empty, the reply to q about match (see writeFast: a match that
// found nothing is NXDOMAIN, the caller having decided the name is not passed on) and reports what
// it answered, or none, with b still empty, when this reply needs the slow path. Over UDP the reply
// must fit the client's EDNS0 size, or 512 bytes. The prepacked records point at the question's
// name by its offset in the message, 12: hence the empty b.
func appendReply(b []byte, q *fastQuery, t *table.Table, match table.Match, negZone string, udp bool) ([]byte, outcome) {
	empty := b[:0]
	found := match.Found()
	flags := q.flags
	if !found {
		flags |= dns.RcodeNameError
	}
	b = binary.BigEndian.AppendUint16(empty, q.id)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, 0, 0, 0, 0, 0, 0) // QDCOUNT 1; ANCOUNT, NSCOUNT and ARCOUNT set below
	if q.question != nil {
		b = append(b, q.question...)
	} else {
		if b = appendName(b, q.name); b == nil {
			return empty, outcomeNone
		}
		b = binary.BigEndian.AppendUint16(b, q.qtype)
		b = binary.BigEndian.AppendUint16(b, q.qclass)
	}
	count, result := 0, outcomeHit
	if found {
		b, count = t.AppendWire(b, match, q.qtype)
	}
	if count == 0 {
		var ok bool
		at := nameAt(b, negZone) // the SOA's names compressed, as Knot's and NSD's are
		if found {
			b, ok = t.AppendNoData(b, match, q.qtype, negZone, at)
			result = outcomeNoData
		} else {
			b, ok = t.AppendSOA(b, negZone, at)
			result = outcomeNXDomain
		}
		if !ok {
			return empty, outcomeNone
		}
		binary.BigEndian.PutUint16(b[8:], 1) // NSCOUNT
	}
	binary.BigEndian.PutUint16(b[6:], uint16(count)) // ANCOUNT
	limit := dns.MinMsgSize
	if q.edns {
		limit = max(int(q.udpSize), dns.MinMsgSize)
		binary.BigEndian.PutUint16(b[10:], 1)             // ARCOUNT
		b = append(b, 0)                                  // owner: root
		b = binary.BigEndian.AppendUint16(b, dns.TypeOPT) // type
		b = binary.BigEndian.AppendUint16(b, q.udpSize)   // class: the client's size, as CoreDNS echoes it
		ttl := uint32(0)                                  // extended rcode 0, version 0
		if q.do {
			ttl = 0x8000 // the DO bit
		}
		b = binary.BigEndian.AppendUint32(b, ttl)
		b = binary.BigEndian.AppendUint16(b, 0) // no options
	}
	if len(b) > dns.MaxMsgSize || len(b) > limit && udp {
		return b[:0], outcomeNone // the slow path truncates and sets TC
	}
	return b, result
}

// nameAt returns the offset in msg, whose question's name (at 12, uncompressed) is written, of the
// suffix of that name that is zone in wire form byte for byte, or 0 when there is none: zone is
// not above the name, or the name spells it in other letter case (DNS 0x20), which the SOA's
// owner must not take.
func nameAt(msg []byte, zone string) int {
	for off := 12; off < len(msg) && msg[off] != 0; off += 1 + int(msg[off]) {
		if isWireName(msg[off:], zone) {
			return off
		}
	}
	return 0
}

// isWireName reports whether b starts with name (fully qualified, without escapes) in wire form.
func isWireName(b []byte, name string) bool {
	i := 0
	for rest := name; rest != "" && rest != "."; {
		dot := strings.IndexByte(rest, '.')
		if dot < 1 || i+1+dot > len(b) || int(b[i]) != dot || string(b[i+1:i+1+dot]) != rest[:dot] {
			return false
		}
		i += 1 + dot
		rest = rest[dot+1:]
	}
	return i < len(b) && b[i] == 0
}

// appendName appends name in wire format, uncompressed, or returns nil if it does not pack. A plain
// name (no escapes) is packed here, without dns.PackDomainName, which may keep what it is given:
// the batched path's names are bytes on the stack (parseQuery), which must not reach the heap.
func appendName(b []byte, name string) []byte {
	if packed, ok := table.AppendPlainName(b, name); ok {
		return packed
	}
	start := len(b)
	b = append(b, make([]byte, 256)...)
	off, err := dns.PackDomainName(strings.Clone(name), b, start, nil, false)
	if err != nil {
		return nil
	}
	return b[:off]
}
