package handover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Probe binds addr over UDP and TCP the way CoreDNS will (SO_REUSEPORT) and lets go at once. It
// fails only where CoreDNS's own bind would: something holds the address without sharing it (or
// as another user). The error then names who, as far as this process can see.
func Probe(addr netip.AddrPort) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var opterr error
		if err := c.Control(func(fd uintptr) {
			opterr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return opterr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr.String())
	if err == nil {
		pc.Close()
		var l net.Listener
		if l, err = lc.Listen(context.Background(), "tcp", addr.String()); err == nil {
			l.Close()
			return nil
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is held by %s, which does not share it: %w", addr, holder(addr), err)
	}
	return err
}

// holder names the processes whose sockets are bound to addr ("pid 812 (dnsmasq)"), or says that
// none can be seen (another network namespace's view, or no /proc).
func holder(addr netip.AddrPort) string {
	inodes := map[uint64]bool{}
	for _, table := range []string{"udp", "udp6", "tcp", "tcp6"} {
		f, err := os.Open("/proc/net/" + table)
		if err != nil {
			continue
		}
		socks, err := ParseTable(f)
		f.Close()
		if err != nil {
			continue
		}
		for _, s := range socks {
			if s.Local == addr || (s.Local.Port() == addr.Port() && s.Local.Addr().IsUnspecified()) {
				inodes[s.Inode] = true
			}
		}
	}
	var who []string
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range procs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, _ := os.Readlink(filepath.Join(dir, fd.Name()))
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err != nil || !inodes[ino] {
				continue
			}
			pid := filepath.Base(filepath.Dir(dir))
			comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
			who = append(who, fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(string(comm))))
			break
		}
	}
	if len(who) == 0 {
		return "a socket of no process this one can see"
	}
	return strings.Join(who, ", ")
}
