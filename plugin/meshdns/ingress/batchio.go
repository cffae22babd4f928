package ingress

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchIO reads one socket's datagrams and writes their replies in batches (recvmmsg, sendmmsg)
// through the socket's RawConn, so that the netpoller parks the loop on an empty socket and Close and
// deadlines wake it as they wake any net.UDPConn's reader. Every header, buffer, address and control
// message is allocated once, with the socket: reading a datagram and writing its reply allocate
// nothing (golang.org/x/net's ReadBatch made a *net.UDPAddr for every datagram, WriteBatch a
// sockaddr for every reply, and under a CPU quota that garbage is a good part of the cost).
type batchIO struct {
	rc syscall.RawConn

	in      []unix.Mmsghdr
	inBufs  [][]byte
	inAddrs []unix.RawSockaddrInet6 // room for either family's address
	inOOB   []byte                  // oobSize per datagram, on a wildcard or timestamping socket only
	filled  int                     // datagrams the last read filled: their headers need resetting

	out      []unix.Mmsghdr
	outIov   []unix.Iovec
	outBufs  [][]byte
	outAddrs []unix.RawSockaddrInet6
	outOOB   []byte // sourceSpace per reply, on a wildcard socket only

	// The RawConn callbacks and what they leave: made once, as a method value made at each call
	// would be allocated each time.
	recvFunc, sendFunc func(fd uintptr) bool
	n                  int
	errno              error
	off, end           int // the replies sendFunc sends: out[off:end]
}

// sourceSpace is the room for the control message that sends a reply from an address.
var sourceSpace = unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// newBatchIO reads and writes c's datagrams; wild is a wildcard socket's (each reply sent from its
// query's destination), controls one that reads control messages (a wildcard's, or timestamps).
func newBatchIO(c *net.UDPConn, wild, controls bool) (*batchIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchIO{rc: rc,
		in: make([]unix.Mmsghdr, batchSize), inBufs: make([][]byte, batchSize),
		inAddrs: make([]unix.RawSockaddrInet6, batchSize), out: make([]unix.Mmsghdr, batchSize),
		outIov: make([]unix.Iovec, batchSize), outBufs: make([][]byte, batchSize),
		outAddrs: make([]unix.RawSockaddrInet6, batchSize)}
	inIov := make([]unix.Iovec, batchSize)
	if wild || controls {
		b.inOOB = alignedBytes(batchSize * oobSize)
	}
	if wild {
		b.outOOB = alignedBytes(batchSize * sourceSpace)
	}
	for i := range batchSize {
		b.inBufs[i] = make([]byte, readSize)
		inIov[i].Base = &b.inBufs[i][0]
		inIov[i].SetLen(readSize)
		h := &b.in[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.inAddrs[i]))
		h.Iov = &inIov[i]
		h.SetIovlen(1)
		if b.inOOB != nil {
			h.Control = &b.inOOB[i*oobSize]
		}
		b.outBufs[i] = make([]byte, 0, replySize)
		o := &b.out[i].Hdr
		o.Name = (*byte)(unsafe.Pointer(&b.outAddrs[i]))
		o.Iov = &b.outIov[i]
		o.SetIovlen(1)
	}
	b.filled = batchSize
	b.recvFunc, b.sendFunc = b.recv, b.send
	return b, nil
}

// alignedBytes is n zero bytes aligned for control message headers.
func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// read fills the batch with what the socket holds, waiting in the netpoller while it holds nothing.
func (b *batchIO) read() (int, error) {
	for i := range b.filled { // what the kernel wrote over, for this read
		h := &b.in[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		if b.inOOB != nil {
			h.SetControllen(oobSize)
		}
		h.Flags = 0
	}
	b.n, b.errno = 0, nil
	if err := b.rc.Read(b.recvFunc); err != nil {
		b.filled = 0
		return 0, err
	}
	b.filled = b.n
	return b.n, b.errno
}

// recv and send call the kernel raw, without telling the scheduler: on a non-blocking socket they
// never block, and a sendmmsg of a whole batch outlasts sysmon's 20 µs tick, after which a
// scheduled syscall has its P handed off and taken back, threads woken and switched for each batch
// (measured: a third of the CPU time per query under a CPU quota, and most context switches).
func (b *batchIO) recv(fd uintptr) bool { return b.mmsg(unix.SYS_RECVMMSG, fd, b.in) }

// mmsg makes the batch call trap (recvmmsg or sendmmsg) on hdrs, retrying when interrupted. It
// reports false on EAGAIN (nothing queued, or no room to send: the netpoller waits until there is),
// and otherwise records the count and the error in b.
func (b *batchIO) mmsg(trap, fd uintptr, hdrs []unix.Mmsghdr) bool {
	for {
		n, _, errno := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		b.errno = errno
		return true
	}
}

// datagram is the i-th datagram read.
func (b *batchIO) datagram(i int) []byte { return b.inBufs[i][:b.in[i].Len] }

// client is the address the i-th datagram came from, without allocating: the address and the port
// alone, for Respond (the chain gets the zone too, from udpAddr).
func (b *batchIO) client(i int) (netip.AddrPort, bool) {
	sa := &b.inAddrs[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]) // network order in memory
	switch {
	case sa.Family == unix.AF_INET6 && b.in[i].Hdr.Namelen >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port), true
	case sa.Family == unix.AF_INET && b.in[i].Hdr.Namelen >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port), true
	}
	return netip.AddrPort{}, false
}

// udpAddr is the i-th datagram's client as the chain's plugins see a UDP client, with the zone of a
// link-local address.
func (b *batchIO) udpAddr(i int, client netip.AddrPort) *net.UDPAddr {
	a := net.UDPAddrFromAddrPort(client)
	if sa := &b.inAddrs[i]; sa.Family == unix.AF_INET6 && sa.Scope_id != 0 {
		a.Zone = zoneName(sa.Scope_id)
	}
	return a
}

// zoneName is the name of the interface with index, as net names a link-local address's zone, or the
// index itself when it has no name.
func zoneName(index uint32) string {
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(index), 10)
}

// oob is the i-th datagram's control messages (a wildcard socket's destination address, the
// receive timestamp).
func (b *batchIO) oob(i int) []byte {
	if b.inOOB == nil {
		return nil
	}
	return b.inOOB[i*oobSize : i*oobSize+int(b.in[i].Hdr.Controllen)]
}

// replyBuffer is the empty buffer the j-th reply of this batch is appended to.
func (b *batchIO) replyBuffer(j int) []byte { return b.outBufs[j][:0] }

// queueReply makes reply the j-th of this batch, to the client of the i-th datagram, from src on a
// wildcard socket.
func (b *batchIO) queueReply(j int, reply []byte, i int, src netip.Addr) {
	b.outBufs[j] = reply // Respond may have grown the buffer: keep the larger one
	b.outIov[j].Base = unsafe.SliceData(reply)
	b.outIov[j].SetLen(len(reply))
	b.outAddrs[j] = b.inAddrs[i] // the client's sockaddr as read: family, port, scope
	h := &b.out[j].Hdr
	h.Namelen = b.in[i].Hdr.Namelen
	h.Control, h.Controllen = nil, 0
	if b.outOOB != nil {
		slot := b.outOOB[j*sourceSpace : (j+1)*sourceSpace]
		if n := putSource(slot, src); n > 0 {
			h.Control = &slot[0]
			h.SetControllen(n)
		}
	}
}

// write sends the first n replies of this batch; a reply the kernel refuses (a destination it cannot
// reach, ENOBUFS) is skipped, as the single write of CoreDNS would have failed it alone.
func (b *batchIO) write(n int) {
	for b.off, b.end = 0, n; b.off < b.end; {
		b.n, b.errno = 0, nil
		if err := b.rc.Write(b.sendFunc); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.errno = err
		}
		b.off += b.n
		if b.errno != nil {
			b.off++
		}
	}
}

func (b *batchIO) send(fd uintptr) bool { return b.mmsg(unix.SYS_SENDMMSG, fd, b.out[b.off:b.end]) }
