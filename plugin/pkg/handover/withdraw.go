package handover

import (
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Withdraw takes this process's UDP sockets bound to addrs out of their SO_REUSEPORT groups, so that
// the kernel sends every new datagram to the other members (the instance taking over), and waits up
// to max until what was already queued on them has been read (the servers still reading them answer
// it). It connects each socket to its own address: the kernel passes over connected sockets when it
// picks one for a datagram from anyone else, and replies still leave, as a UDP socket sends to an
// explicit address connected or not. It reports how many sockets it withdrew.
func Withdraw(addrs []netip.AddrPort, max time.Duration) (int, error) {
	socks, err := udpSockets()
	if err != nil {
		return 0, err
	}
	own, err := ownInodes()
	if err != nil {
		return 0, err
	}
	var withdrawn []uint64
	for _, s := range socks {
		fd, mine := own[s.Inode]
		if !mine || s.Remote.Port() != 0 || !slices.Contains(addrs, s.Local) {
			continue
		}
		var sa unix.Sockaddr
		if ip := s.Local.Addr(); ip.Is4() {
			sa = &unix.SockaddrInet4{Port: int(s.Local.Port()), Addr: ip.As4()}
		} else {
			sa = &unix.SockaddrInet6{Port: int(s.Local.Port()), Addr: ip.As16()}
		}
		if unix.Connect(fd, sa) == nil {
			withdrawn = append(withdrawn, s.Inode)
		}
	}
	for deadline := time.Now().Add(max); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if queued(withdrawn) == 0 {
			break
		}
	}
	return len(withdrawn), nil
}

// queued sums the receive queues of the sockets with these inodes.
func queued(inodes []uint64) uint64 {
	socks, err := udpSockets()
	if err != nil {
		return 0
	}
	var n uint64
	for _, s := range socks {
		if slices.Contains(inodes, s.Inode) {
			n += s.RxQueue
		}
	}
	return n
}
