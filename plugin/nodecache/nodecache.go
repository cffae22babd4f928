// Package nodecache is the node-local role of meshdns, as NodeLocal DNSCache does it: the resolver
// listens on link-local addresses held by an interface of its own on every node, and iptables rules
// let DNS traffic to and from those addresses skip connection tracking.
package nodecache

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/meshdns/meshdns/plugin/pkg/handover"
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
	Lameduck       time.Duration // answering on, not ready, after SIGTERM
	Rules          string        // iptables, nftables or auto
}

// NodeCache keeps the interface and the rules of one Config in place.
type NodeCache struct {
	cfg Config
	// rules is where the rules go, chosen at the first check (auto: what the host uses). Only the
	// check loop and, after it stopped, the teardown use it.
	rules ruleset

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func newNodeCache(cfg Config) *NodeCache {
	return &NodeCache{cfg: cfg}
}

// ruleset picks the rules' backend once.
func (n *NodeCache) ruleset() ruleset {
	if n.rules == nil {
		n.rules = chooseRuleset(n.cfg)
	}
	return n.rules
}

// ensure puts back whatever is missing, and reports what it did.
func (n *NodeCache) ensure() ([]string, error) {
	did, err := n.ensureLink()
	if err != nil {
		return did, err
	}
	d, err := n.ensureRules()
	return append(did, d...), err
}

// ensureLink puts back the interface and its addresses: what the DNS sockets need to bind.
func (n *NodeCache) ensureLink() ([]string, error) {
	if !n.cfg.SetupInterface {
		return nil, nil
	}
	return ensureInterface(n.cfg.Interface, n.cfg.LocalIPs)
}

// ensureRules puts back the rules: with iptables a fork per check, so never on the way to serving.
func (n *NodeCache) ensureRules() ([]string, error) {
	if !n.cfg.SetupIPTables {
		return nil, nil
	}
	return n.ruleset().ensure()
}

// conflictRetry is how often a held address is tried again.
const conflictRetry = time.Second

// conflictLogEvery spaces the log lines while an address is held by something else.
const conflictLogEvery = 30 * time.Second

// waitForAddresses waits while something that does not share it (not another instance of ours)
// holds a DNS address, logging who and counting it, instead of letting the servers' bind fail and
// the process exit into a crash loop: the resolver starts as soon as the address is free.
func (n *NodeCache) waitForAddresses() error {
	for _, a := range n.dnsAddrs() {
		var logged time.Time
		for {
			err := handover.Probe(a)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				return err
			}
			if time.Since(logged) >= conflictLogEvery {
				addressConflicts.Inc()
				log.Errorf("cannot serve yet: %v; waiting for it to go (checking every %v)", err, conflictRetry)
				logged = time.Now()
			}
			time.Sleep(conflictRetry)
		}
		if !logged.IsZero() {
			log.Infof("%s is free: starting", a)
		}
	}
	return nil
}

// teardown removes the rules and the interface, unless told to leave them or another instance still
// serves on the addresses: the last one out tears down.
func (n *NodeCache) teardown() error {
	if n.cfg.SkipTeardown {
		log.Infof("leaving interface %s and its rules in place (skip_teardown)", n.cfg.Interface)
		return nil
	}
	others, err := handover.Others(n.dnsAddrs())
	switch {
	case err != nil:
		log.Warningf("leaving interface %s and its rules in place: cannot tell whether another instance serves %s: %v",
			n.cfg.Interface, n.addrList(), err)
		return nil
	case len(others) > 0:
		log.Infof("leaving interface %s and its rules to the instance still serving %v", n.cfg.Interface, others)
		return nil
	}
	var errs []error
	if n.cfg.SetupIPTables {
		errs = append(errs, n.ruleset().remove())
	}
	if n.cfg.SetupInterface {
		errs = append(errs, removeInterface(n.cfg.Interface))
	}
	err = errors.Join(errs...)
	if err == nil {
		log.Infof("removed interface %s and its rules", n.cfg.Interface)
	}
	return err
}

// start adds the rules that are missing, in the background so that the servers bind as soon as the
// interface is there, then checks every CheckInterval that the interface and the rules are still
// there (another agent may flush iptables, an operator may delete the interface) and puts them back.
func (n *NodeCache) start() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		did, err := n.ensureRules()
		if len(did) > 0 {
			log.Infof("node-local setup: %s", strings.Join(did, "; "))
		}
		n.reportError(err)
		if n.cfg.CheckInterval <= 0 {
			return
		}
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
			n.reportError(err)
		}
	}()
}

func (n *NodeCache) reportError(err error) {
	if err != nil {
		setupErrors.Inc()
		log.Errorf("checking the node-local setup: %v", err)
	}
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
