// Package handover lets two instances of meshdns on one host (two pods of a DaemonSet during a
// rollout, two processes of a VM's unit) hand a node over without losing a query: each can tell
// whether another process serves the same address, the one leaving stops the kernel from choosing
// its UDP sockets and answers what they hold, and the last one out is the one that tears down.
//
// Processes are told apart by socket inode: the kernel's socket tables (/proc/net/udp, udp6) list
// every socket of the network namespace, /proc/self/fd names this process's own.
package handover

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Socket is one line of a kernel socket table.
type Socket struct {
	Local, Remote netip.AddrPort
	RxQueue       uint64 // bytes waiting to be read
	Inode         uint64
}

// ParseTable parses /proc/net/udp or /proc/net/udp6 (tcp and tcp6 have the same leading columns).
// A line that does not parse is an error naming it: a kernel that prints another layout must not be
// read as "nobody else is here".
func ParseTable(r io.Reader) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue // the header
		}
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("socket table line %d: %d fields, want at least 10", line+1, len(f))
		}
		var s Socket
		var err error
		if s.Local, err = parseHexAddrPort(f[1]); err != nil {
			return nil, fmt.Errorf("socket table line %d: local address: %w", line+1, err)
		}
		if s.Remote, err = parseHexAddrPort(f[2]); err != nil {
			return nil, fmt.Errorf("socket table line %d: remote address: %w", line+1, err)
		}
		_, rx, ok := strings.Cut(f[4], ":")
		if !ok {
			return nil, fmt.Errorf("socket table line %d: queues %q are not tx:rx", line+1, f[4])
		}
		if s.RxQueue, err = strconv.ParseUint(rx, 16, 64); err != nil {
			return nil, fmt.Errorf("socket table line %d: receive queue: %w", line+1, err)
		}
		if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
			return nil, fmt.Errorf("socket table line %d: inode: %w", line+1, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseHexAddrPort reads the kernel's "0A14FEA9:0035": the address as 32-bit words in host order
// (little-endian on every architecture Kubernetes nodes run), the port in big-endian hex.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDRESS:PORT", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IPv4 or IPv6 address in hex", a)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not a port in hex", p)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// udpSockets reads both UDP tables of this network namespace. A family the kernel lacks (no IPv6)
// has no table, and no sockets.
func udpSockets() ([]Socket, error) {
	var out []Socket
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s, err := ParseTable(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, s...)
	}
	return out, nil
}

// ownInodes lists the socket inodes this process holds, with the descriptor of each.
func ownInodes() (map[uint64]int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	out := map[uint64]int{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue // closed since the listing, or not a socket
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64); err == nil {
			out[ino] = fd
		}
	}
	return out, nil
}

// Others returns, of addrs, those that a UDP socket of another process is bound to: another
// instance (or something else) answers there too.
func Others(addrs []netip.AddrPort) ([]netip.AddrPort, error) {
	socks, err := udpSockets()
	if err != nil {
		return nil, err
	}
	own, err := ownInodes()
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		for _, s := range socks {
			if _, mine := own[s.Inode]; !mine && s.Local == a && s.Inode != 0 {
				out = append(out, a)
				break
			}
		}
	}
	return out, nil
}
