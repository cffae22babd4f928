package nodecache

import (
	"fmt"
	"net/netip"
	"os/exec"

	"github.com/google/nftables"
)

// A ruleset holds the NOTRACK/ACCEPT rules of every local address in one firewall.
type ruleset interface {
	ensure() ([]string, error) // adds what is missing and says what it added
	remove() error
	String() string
}

// chooseRuleset returns the backend cfg.Rules names; auto takes nftables where kube-proxy runs in
// nftables mode (its tables are there) or where there is no iptables command, iptables otherwise.
func chooseRuleset(cfg Config) ruleset {
	var rules []rule
	byAddr := map[netip.Addr][]rule{}
	for _, ip := range cfg.LocalIPs {
		r := rulesFor(ip, cfg.Port, cfg.HealthPort)
		byAddr[ip] = r
		rules = append(rules, r...)
	}
	mode := cfg.Rules
	if mode == "auto" || mode == "" {
		mode = detectRules()
		log.Infof("rules auto: using %s", mode)
	}
	if mode == "nftables" {
		return &nftRules{table: cfg.Interface, rules: rules}
	}
	return &iptablesRules{ips: cfg.LocalIPs, rules: byAddr}
}

// detectRules says which firewall the host uses.
func detectRules() string {
	if conn, err := nftables.New(); err == nil {
		if tables, err := conn.ListTables(); err == nil {
			for _, t := range tables {
				if t.Name == "kube-proxy" {
					return "nftables"
				}
			}
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return "nftables"
	}
	return "iptables"
}

// iptablesRules are the rules as NodeLocal DNSCache writes them, through the iptables command.
type iptablesRules struct {
	ips   []netip.Addr
	rules map[netip.Addr][]rule
}

func (r *iptablesRules) String() string { return "iptables" }

func (r *iptablesRules) ensure() ([]string, error) {
	var did []string
	for _, ip := range r.ips {
		fw, err := newFirewall(ip)
		if err != nil {
			return did, err
		}
		d, err := ensureRules(fw, r.rules[ip])
		did = append(did, d...)
		if err != nil {
			return did, err
		}
	}
	return did, nil
}

func (r *iptablesRules) remove() error {
	var first error
	for _, ip := range r.ips {
		fw, err := newFirewall(ip)
		if err == nil {
			err = removeRules(fw, r.rules[ip])
		}
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %w", ip, err)
		}
	}
	return first
}
