package ingress

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A wildcard socket learns the address each datagram was sent to from its IP_PKTINFO or IPV6_PKTINFO
// control message, and sends the reply from that address with the same control message, as
// miekg/dns does: a client takes replies only from the address it asked. Both are read and written
// in place, without allocating.

// wantDestinations asks for each datagram's destination address, both families' way (a wildcard
// socket of Go's is dual-stack).
func wantDestinations(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("ingress: asking for destination addresses: %w", err)
	}
	var err4, err6 error
	if err := rc.Control(func(fd uintptr) {
		err6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		err4 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	}); err != nil {
		return fmt.Errorf("ingress: asking for destination addresses: %w", err)
	}
	if err6 != nil && err4 != nil {
		return fmt.Errorf("ingress: asking for destination addresses: %w", err4)
	}
	return nil
}

// destinationOf is the address a datagram was sent to, from its control messages oob: IPV6_PKTINFO's
// when there is one (on a dual-stack socket, an IPv4 destination in its IPv6 form), else IP_PKTINFO's.
func destinationOf(oob []byte) (netip.Addr, bool) {
	var v4 netip.Addr
	for h, data, rest, ok := nextControlMessage(oob); ok; h, data, rest, ok = nextControlMessage(rest) {
		switch {
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return netip.AddrFrom16((*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0])).Addr), true
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			v4 = netip.AddrFrom4((*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])).Addr)
		}
	}
	return v4, v4.IsValid()
}

// nextControlMessage splits the first control message off oob, as the kernel lays them out: its
// header, its data and the messages after it; ok is false when oob holds no whole message.
func nextControlMessage(oob []byte) (h *unix.Cmsghdr, data, rest []byte, ok bool) {
	if len(oob) < unix.SizeofCmsghdr {
		return nil, nil, nil, false
	}
	h = (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	size := int(h.Len)
	if size < unix.SizeofCmsghdr || size > len(oob) {
		return nil, nil, nil, false
	}
	return h, oob[unix.CmsgLen(0):size], oob[min(unix.CmsgSpace(size-unix.CmsgLen(0)), len(oob)):], true
}

// putSource writes into slot (sourceSpace bytes, 8-byte aligned) the control message that sends a
// datagram from src, and returns its length: IP_PKTINFO for an IPv4 address (also in its IPv6 form,
// a dual-stack socket's IPv4 client), IPV6_PKTINFO for the others.
func putSource(slot []byte, src netip.Addr) int {
	if !src.IsValid() || len(slot) < sourceSpace {
		return 0
	}
	clear(slot)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&slot[0]))
	data := unsafe.Pointer(&slot[unix.CmsgLen(0)])
	if src.Unmap().Is4() {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		(*unix.Inet4Pktinfo)(data).Spec_dst = src.Unmap().As4()
		return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	}
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	(*unix.Inet6Pktinfo)(data).Addr = src.As16()
	return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
}

// sourceMessage is putSource's control message in a buffer of its own, for the chain's replies.
func sourceMessage(src netip.Addr) []byte {
	b := alignedBytes(sourceSpace)
	return b[:putSource(b, src)]
}
