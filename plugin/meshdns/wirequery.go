package meshdns

import (
	"encoding/binary"
	"unsafe"

	"github.com/miekg/dns"
)

// parseQuery reads, straight from its datagram, a query the batched UDP path may answer: a standard
// query (QUERY opcode, not a response, not truncated) with one IN question for A or AAAA whose name
// holds only letters, digits, hyphens and underscores (so that its text form needs no escapes), and
// nothing else but an EDNS0 OPT of version 0 without options. Everything else reports false and is
// read by CoreDNS's chain as it always is, including every malformed message. The name's text is
// written into text and q.name is those bytes, not a copy (a hit allocates nothing): q.name must not
// be kept past text's life, nor text written while q.name is used.
func parseQuery(b []byte, text *[maxNameWire]byte) (fastQuery, bool) {
	const header = 12
	if len(b) < header+5 {
		return fastQuery{}, false
	}
	if b[2]&0xfa != 0 || b[3]&0x0f != 0 { // QR, opcode and TC; the rcode
		return fastQuery{}, false
	}
	qd, an, ns, ar := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:]), binary.BigEndian.Uint16(b[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return fastQuery{}, false
	}
	name := text[:0]
	off := header
	for {
		if off >= len(b) {
			return fastQuery{}, false
		}
		n := int(b[off])
		off++
		if n == 0 {
			break
		}
		if n > 63 || off+n > len(b) || off-header+n > maxNameWire-1 { // also no compression pointer
			return fastQuery{}, false
		}
		for _, c := range b[off : off+n] {
			if !plainNameByte[c] {
				return fastQuery{}, false
			}
		}
		name = append(append(name, b[off:off+n]...), '.')
		off += n
	}
	if len(name) == 0 {
		name = append(name, '.')
	}
	if off+4 > len(b) {
		return fastQuery{}, false
	}
	q := fastQuery{
		id:       binary.BigEndian.Uint16(b),
		flags:    replyFlags(dns.OpcodeQuery, b[2]&0x01 != 0, b[3]&0x10 != 0),
		question: b[header : off+4],
		qtype:    binary.BigEndian.Uint16(b[off:]),
		qclass:   binary.BigEndian.Uint16(b[off+2:]),
	}
	if q.qtype != dns.TypeA && q.qtype != dns.TypeAAAA || q.qclass != dns.ClassINET {
		return fastQuery{}, false
	}
	off += 4
	if ar == 1 {
		// OPT: root owner, type, the client's UDP size, extended rcode, version, flags, no data.
		if len(b)-off != 11 || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != dns.TypeOPT ||
			b[off+5] != 0 || b[off+6] != 0 || binary.BigEndian.Uint16(b[off+9:]) != 0 {
			return fastQuery{}, false
		}
		q.edns, q.udpSize, q.do = true, binary.BigEndian.Uint16(b[off+3:]), b[off+7]&0x80 != 0
		off += 11
	}
	if off != len(b) {
		return fastQuery{}, false
	}
	q.name = unsafe.String(unsafe.SliceData(name), len(name))
	return q, true
}

const maxNameWire = 255 // octets of a name in wire form (RFC 1035 2.3.4)

func isPlainNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// plainNameByte is isPlainNameByte as a table: one load per byte of every name read.
var plainNameByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isPlainNameByte(byte(c))
	}
	return t
}()
