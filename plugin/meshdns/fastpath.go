package meshdns

import (
	"encoding/binary"
	"reflect"
	"sync"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

// The fast path writes the reply to a direct A or AAAA hit as bytes: the header, the question as
// asked, the table's prepacked records, and the OPT record. It skips building a dns.Msg and the
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
			w = x.Recorder.ResponseWriter // counts bytes; the rcode it reports is NOERROR, as ours
		default:
			// Not the log or trace plugins' recorder either: they print the reply's flags from the
			// dns.Msg they record, which bytes would leave empty.
			return terminalWriters[reflect.TypeOf(w).String()]
		}
	}
}

// writeFast answers r from the prepacked records of match: its addresses, or the SOA of its zone
// when it has none of the asked type (only in the root zone, where that SOA is the name's own). It
// reports what it answered, or none (having written nothing) when this reply needs the slow path.
func (m *MeshDNS) writeFast(w dns.ResponseWriter, r *dns.Msg, t *table.Table, match table.Match, zone string) (outcome, error) {
	q := r.Question[0]
	opt := r.IsEdns0()
	if opt != nil && len(opt.Option) > 0 { // options (cookies, NSID) are for the slow path to echo
		return outcomeNone, nil
	}
	if !passesBytes(w) {
		return outcomeNone, nil
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b := (*bp)[:12]
	binary.BigEndian.PutUint16(b[0:], r.Id)
	flags := uint16(1<<15 | uint16(r.Opcode&0xf)<<11 | 1<<10) // QR, opcode, AA
	if r.RecursionDesired {
		flags |= 1 << 8
	}
	if r.CheckingDisabled {
		flags |= 1 << 4
	}
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], 1) // QDCOUNT
	binary.BigEndian.PutUint16(b[8:], 0) // NSCOUNT, until a negative answer sets it
	b = appendName(b, q.Name)
	if b == nil {
		return outcomeNone, nil
	}
	b = binary.BigEndian.AppendUint16(b, q.Qtype)
	b = binary.BigEndian.AppendUint16(b, q.Qclass)
	b, count := t.AppendWire(b, match, q.Qtype)
	result := outcomeHit
	if count == 0 {
		var nodata bool
		if zone == "." {
			b, nodata = t.AppendNoData(b, match, q.Qtype)
		}
		if !nodata {
			return outcomeNone, nil
		}
		result = outcomeNoData
		binary.BigEndian.PutUint16(b[8:], 1) // NSCOUNT
	}
	binary.BigEndian.PutUint16(b[6:], uint16(count)) // ANCOUNT
	additional := uint16(0)
	limit := dns.MinMsgSize
	if opt != nil {
		additional = 1
		limit = max(int(opt.UDPSize()), dns.MinMsgSize)
		b = append(b, 0)                                         // owner: root
		b = binary.BigEndian.AppendUint16(b, dns.TypeOPT)        // type
		b = binary.BigEndian.AppendUint16(b, opt.UDPSize())      // class: the client's size, as CoreDNS echoes it
		b = binary.BigEndian.AppendUint32(b, opt.Hdr.Ttl&0x8000) // extended rcode 0, version 0, the DO bit
		b = binary.BigEndian.AppendUint16(b, 0)                  // no options
	}
	binary.BigEndian.PutUint16(b[10:], additional) // ARCOUNT
	if len(b) > dns.MaxMsgSize || len(b) > limit && w.RemoteAddr().Network() == "udp" {
		return outcomeNone, nil // the slow path truncates and sets TC
	}
	*bp = b
	_, err := w.Write(b)
	return result, err
}

// appendName appends name in wire format, uncompressed, or returns nil if it does not pack.
func appendName(b []byte, name string) []byte {
	start := len(b)
	b = append(b, make([]byte, 256)...)
	off, err := dns.PackDomainName(name, b, start, nil, false)
	if err != nil {
		return nil
	}
	return b[:off]
}
