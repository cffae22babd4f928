package nodecache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// nftRules writes the same rules as iptables would, through nftables over netlink, for hosts whose
// kube-proxy runs in nftables mode and have no iptables chains to join (kubernetes/dns#682). They
// live in a table of their own (family inet, named after the interface), so that checking is
// reading one table and tearing down is deleting it. Each rule carries its iptables form as its
// comment (`nft list table inet nodelocaldns` shows it), which is how a check tells which are there.
type nftRules struct {
	table string
	rules []rule // every address's, in rulesFor's iptables form
}

// nftChains maps the iptables table and chain of a rule to the base chain that does the same:
// raw hooks before conntrack (priority raw), filter at the filter priority.
var nftChains = map[[2]string]struct {
	name     string
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
}{
	{"raw", "PREROUTING"}: {"raw-prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityRaw},
	{"raw", "OUTPUT"}:     {"raw-output", nftables.ChainHookOutput, nftables.ChainPriorityRaw},
	{"filter", "INPUT"}:   {"filter-input", nftables.ChainHookInput, nftables.ChainPriorityFilter},
	{"filter", "OUTPUT"}:  {"filter-output", nftables.ChainHookOutput, nftables.ChainPriorityFilter},
}

func (n *nftRules) String() string { return "nftables table inet " + n.table }

func (n *nftRules) tableRef() *nftables.Table {
	return &nftables.Table{Name: n.table, Family: nftables.TableFamilyINet}
}

func (n *nftRules) chainFor(r rule) (*nftables.Chain, error) {
	c, ok := nftChains[[2]string{r.table, r.chain}]
	if !ok {
		return nil, fmt.Errorf("rule %s: no nftables chain for %s %s", r, r.table, r.chain)
	}
	return &nftables.Chain{Name: c.name, Table: n.tableRef(), Hooknum: c.hook, Priority: c.priority, Type: nftables.ChainTypeFilter}, nil
}

// ensure adds the table, the chains and the rules that are missing, in one netlink transaction,
// and reports what it added.
func (n *nftRules) ensure() ([]string, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	have := map[string]map[string]bool{} // chain -> the user data of its rules
	if _, err := conn.ListTableOfFamily(n.table, nftables.TableFamilyINet); err == nil {
		chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return nil, fmt.Errorf("nftables: listing chains: %w", err)
		}
		for _, c := range chains {
			if c.Table.Name != n.table {
				continue
			}
			rules, err := conn.GetRules(c.Table, c)
			if err != nil {
				return nil, fmt.Errorf("nftables: rules of %s: %w", c.Name, err)
			}
			have[c.Name] = map[string]bool{}
			for _, r := range rules {
				if comment, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
					have[c.Name][comment] = true
				}
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("nftables: reading table %s: %w", n.table, err)
	}
	var did []string
	if len(have) == 0 {
		conn.AddTable(n.tableRef())
		did = append(did, "added "+n.String())
	}
	for _, r := range n.rules {
		chain, err := n.chainFor(r)
		if err != nil {
			return nil, err
		}
		if have[chain.Name] == nil {
			conn.AddChain(chain)
			have[chain.Name] = map[string]bool{}
		}
		if have[chain.Name][r.String()] {
			continue
		}
		exprs, err := nftExprs(r)
		if err != nil {
			return nil, err
		}
		conn.AddRule(&nftables.Rule{Table: chain.Table, Chain: chain, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.String())})
		have[chain.Name][r.String()] = true
		did = append(did, "added nftables rule "+r.String())
	}
	if len(did) == 0 {
		return nil, nil
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("nftables: writing %s: %w", n, err)
	}
	return did, nil
}

// remove deletes the table, if it is there.
func (n *nftRules) remove() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if _, err := conn.ListTableOfFamily(n.table, nftables.TableFamilyINet); err != nil {
		return nil
	}
	conn.DelTable(n.tableRef())
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables: deleting %s: %w", n, err)
	}
	return nil
}

// nftExprs turns one of rulesFor's iptables rules into nftables expressions: the family, the
// protocol, the address, the port, then the verdict.
func nftExprs(r rule) ([]expr.Any, error) {
	var (
		proto, port      string
		addr             netip.Addr
		srcAddr, srcPort bool
		target           string
	)
	for i := 0; i+1 < len(r.spec); i += 2 {
		switch v := r.spec[i+1]; r.spec[i] {
		case "-p":
			proto = v
		case "-d", "-s":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("rule %s: %q is not an address", r, v)
			}
			addr, srcAddr = a, r.spec[i] == "-s"
		case "--dport", "--sport":
			port, srcPort = v, r.spec[i] == "--sport"
		case "-j":
			target = v
		default:
			return nil, fmt.Errorf("rule %s: %s has no nftables form here", r, r.spec[i])
		}
	}
	l4 := map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP}[proto]
	p, err := strconv.ParseUint(port, 10, 16)
	if l4 == 0 || err != nil || !addr.IsValid() {
		return nil, fmt.Errorf("rule %s: want a protocol, an address and a port", r)
	}
	// Offsets in the network header (IPv4: source 12, destination 16; IPv6: 8, 24) and in the
	// transport header (UDP and TCP alike: source port 0, destination port 2).
	family, offset := byte(unix.NFPROTO_IPV4), uint32(16)
	if addr.Is6() {
		family, offset = unix.NFPROTO_IPV6, 24
	}
	if srcAddr {
		offset -= uint32(addr.BitLen() / 8)
	}
	portOffset := uint32(2)
	if srcPort {
		portOffset = 0
	}
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(addr.BitLen() / 8)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr.AsSlice()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: portOffset, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, uint16(p))},
	}
	switch target {
	case "NOTRACK":
		out = append(out, &expr.Notrack{})
	case "ACCEPT":
		out = append(out, &expr.Verdict{Kind: expr.VerdictAccept})
	default:
		return nil, fmt.Errorf("rule %s: target %q has no nftables form here", r, target)
	}
	return out, nil
}
