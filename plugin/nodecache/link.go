package nodecache

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ensureInterface makes sure the interface name exists, is up and holds every address in ips, as
// host routes (/32, /128). It reports what it had to do, nothing when all was in place. The
// interface is a dummy, as NodeLocal DNSCache makes it; on a kernel built without dummy interfaces
// it is an empty bridge, which holds local addresses just as well.
func ensureInterface(name string, ips []netip.Addr) ([]string, error) {
	var did []string
	link, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		kind := "dummy"
		err = netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if errors.Is(err, syscall.EOPNOTSUPP) {
			kind = "bridge (this kernel has no dummy interfaces)"
			err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		}
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return did, fmt.Errorf("creating interface %s: %w", name, err)
		}
		did = append(did, "created interface "+name+" as a "+kind)
		link, err = netlink.LinkByName(name)
	}
	if err != nil {
		return did, fmt.Errorf("interface %s: %w", name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return did, fmt.Errorf("setting %s up: %w", name, err)
		}
		did = append(did, "set "+name+" up")
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return did, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, ip := range ips {
		if hasAddr(have, ip) {
			continue
		}
		bits := ip.BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if ip.Is6() {
			// No duplicate address detection: the address is this node's own, and a tentative one
			// cannot be bound for the second or so that DAD takes.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return did, fmt.Errorf("adding %s to %s: %w", ip, name, err)
		}
		did = append(did, fmt.Sprintf("added %s to %s", ip, name))
	}
	return did, nil
}

func hasAddr(have []netlink.Addr, ip netip.Addr) bool {
	for _, a := range have {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			return true
		}
	}
	return false
}

// removeInterface deletes the interface name, if it is there.
func removeInterface(name string) error {
	link, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("deleting interface %s: %w", name, err)
	}
	return nil
}
