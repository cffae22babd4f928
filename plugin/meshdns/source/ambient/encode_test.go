package ambient

import "net/netip"

func addrs(ss ...string) []netip.Addr {
	if len(ss) == 0 {
		return nil
	}
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func vips(network string, ss ...string) []NetworkAddress {
	out := make([]NetworkAddress, len(ss))
	for i, s := range ss {
		out[i] = NetworkAddress{Network: network, Addr: netip.MustParseAddr(s)}
	}
	return out
}
