// Package nodecache is the node-local role of meshdns, as NodeLocal DNSCache does it: the resolver
// listens on link-local addresses held by an interface of its own on every node, and iptables rules
// let DNS traffic to and from those addresses skip connection tracking.
package nodecache

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

const pluginName = "nodecache"

var log = clog.NewWithPlugin(pluginName)

// Config is the nodecache directive, with the options of k8s-dns-node-cache.
type Config struct {
	LocalIPs       []netip.Addr  // -localip
	Interface      string        // -interfacename
	SetupInterface bool          // -setupinterface
	SetupIPTables  bool          // -setupiptables
	SkipTeardown   bool          // -skipteardown
	Port           int           // the DNS port on the local addresses
	HealthPort     int           // -health-port
	CheckInterval  time.Duration // -syncinterval
}

// NodeCache keeps the interface and the rules of one Config in place.
type NodeCache struct {
	cfg   Config
	rules map[netip.Addr][]rule

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func newNodeCache(cfg Config) *NodeCache {
	n := &NodeCache{cfg: cfg, rules: map[netip.Addr][]rule{}}
	for _, ip := range cfg.LocalIPs {
		n.rules[ip] = rulesFor(ip, cfg.Port, cfg.HealthPort)
	}
	return n
}

// ensure puts back whatever is missing, and reports what it did.
func (n *NodeCache) ensure() ([]string, error) {
	var did []string
	if n.cfg.SetupInterface {
		d, err := ensureInterface(n.cfg.Interface, n.cfg.LocalIPs)
		did = append(did, d...)
		if err != nil {
			return did, err
		}
	}
	if n.cfg.SetupIPTables {
		for _, ip := range n.cfg.LocalIPs {
			fw, err := newFirewall(ip)
			if err != nil {
				return did, err
			}
			d, err := ensureRules(fw, n.rules[ip])
			did = append(did, d...)
			if err != nil {
				return did, err
			}
		}
	}
	return did, nil
}

// teardown removes the rules and the interface, unless told to leave them.
func (n *NodeCache) teardown() error {
	if n.cfg.SkipTeardown {
		log.Infof("leaving interface %s and its iptables rules in place (skip_teardown)", n.cfg.Interface)
		return nil
	}
	var errs []error
	if n.cfg.SetupIPTables {
		for _, ip := range n.cfg.LocalIPs {
			fw, err := newFirewall(ip)
			if err == nil {
				err = removeRules(fw, n.rules[ip])
			}
			errs = append(errs, err)
		}
	}
	if n.cfg.SetupInterface {
		errs = append(errs, removeInterface(n.cfg.Interface))
	}
	err := errors.Join(errs...)
	if err == nil {
		log.Infof("removed interface %s and its iptables rules", n.cfg.Interface)
	}
	return err
}

// start checks every CheckInterval that the interface and the rules are still there (another agent
// may flush iptables, an operator may delete the interface) and puts them back.
func (n *NodeCache) start() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancel != nil || n.cfg.CheckInterval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		tick := time.NewTicker(n.cfg.CheckInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			did, err := n.ensure()
			for _, d := range did {
				repairs.Inc()
				log.Warningf("%s: it had gone", d)
			}
			if err != nil {
				setupErrors.Inc()
				log.Errorf("checking the node-local setup: %v", err)
			}
		}
	}()
}

// stop ends the checks.
func (n *NodeCache) stop() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
