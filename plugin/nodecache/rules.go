package nodecache

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// rule is one iptables rule: table, chain and the match and target.
type rule struct {
	table, chain string
	spec         []string
}

func (r rule) String() string {
	return fmt.Sprintf("-t %s -A %s %s", r.table, r.chain, strings.Join(r.spec, " "))
}

// rulesFor lists, for one local address, the rules NodeLocal DNSCache installs, in its order: DNS
// traffic to and from the address over UDP and TCP skips connection tracking (raw NOTRACK), which a
// node answering every pod's queries would otherwise fill, and is accepted by the filter table, whose
// usual accept of tracked connections no longer matches it; so are the health checks on healthPort.
func rulesFor(ip netip.Addr, port, healthPort int) []rule {
	addr, dns, health := ip.String(), strconv.Itoa(port), strconv.Itoa(healthPort)
	var out []rule
	for _, proto := range []string{"tcp", "udp"} {
		out = append(out, rule{"raw", "PREROUTING", []string{"-p", proto, "-d", addr, "--dport", dns, "-j", "NOTRACK"}})
	}
	for _, proto := range []string{"tcp", "udp"} {
		out = append(out, rule{"filter", "INPUT", []string{"-p", proto, "-d", addr, "--dport", dns, "-j", "ACCEPT"}})
	}
	for _, proto := range []string{"tcp", "udp"} {
		out = append(out, rule{"raw", "OUTPUT", []string{"-p", proto, "-s", addr, "--sport", dns, "-j", "NOTRACK"}})
	}
	for _, proto := range []string{"tcp", "udp"} {
		out = append(out, rule{"filter", "OUTPUT", []string{"-p", proto, "-s", addr, "--sport", dns, "-j", "ACCEPT"}})
	}
	// Queries from the node itself (host-network pods) to the address.
	for _, proto := range []string{"tcp", "udp"} {
		out = append(out, rule{"raw", "OUTPUT", []string{"-p", proto, "-d", addr, "--dport", dns, "-j", "NOTRACK"}})
	}
	out = append(out,
		rule{"raw", "OUTPUT", []string{"-p", "tcp", "-d", addr, "--dport", health, "-j", "NOTRACK"}},
		rule{"raw", "OUTPUT", []string{"-p", "tcp", "-s", addr, "--sport", health, "-j", "NOTRACK"}},
		rule{"filter", "INPUT", []string{"-p", "tcp", "-d", addr, "--dport", health, "-j", "ACCEPT"}},
		rule{"filter", "OUTPUT", []string{"-p", "tcp", "-s", addr, "--sport", health, "-j", "ACCEPT"}},
	)
	return out
}

// firewall is iptables for one address family.
type firewall interface {
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
}

func newFirewall(ip netip.Addr) (firewall, error) {
	proto := iptables.ProtocolIPv4
	if ip.Is6() {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.NewWithProtocol(proto)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ipt, nil
}

// ensureRules inserts the rules that are missing at the top of their chains, ahead of anything that
// would reject the traffic, and reports each one it added.
func ensureRules(fw firewall, rules []rule) ([]string, error) {
	var did []string
	for _, r := range rules {
		ok, err := fw.Exists(r.table, r.chain, r.spec...)
		if err != nil {
			return did, fmt.Errorf("checking rule %s: %w", r, err)
		}
		if ok {
			continue
		}
		if err := fw.Insert(r.table, r.chain, 1, r.spec...); err != nil {
			return did, fmt.Errorf("adding rule %s: %w", r, err)
		}
		did = append(did, "added rule "+r.String())
	}
	return did, nil
}

// removeRules deletes every copy of each of rules (two instances checking at the same moment can each
// have added one), going on past errors, and returns the first.
func removeRules(fw firewall, rules []rule) error {
	var first error
	for _, r := range rules {
		for {
			ok, err := fw.Exists(r.table, r.chain, r.spec...)
			if err == nil && ok {
				err = fw.DeleteIfExists(r.table, r.chain, r.spec...)
			}
			if err != nil && first == nil {
				first = fmt.Errorf("removing rule %s: %w", r, err)
			}
			if err != nil || !ok {
				break
			}
		}
	}
	return first
}
