package nodecache

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/coredns/caddy"
	"github.com/meshdns/meshdns/plugin/pkg/handover"
)

// drainMax bounds the wait for a withdrawn socket's queue to be read.
const drainMax = time.Second

// live is every NodeCache of the running Corefile instance: the goodbye is for them.
var live sync.Map // *NodeCache -> struct{}

func init() {
	caddy.RegisterEventHook(pluginName+"-goodbye", func(ev caddy.EventName, _ any) error {
		if ev == caddy.ShutdownEvent {
			goodbye()
		}
		return nil
	})
}

// goodbye runs once, when the process is told to stop and before any server or source does: the
// readiness goes false, every query is still answered for the lameduck period, and then, where
// another instance serves the same address, this one's UDP sockets leave the SO_REUSEPORT group and
// what they hold is answered, so that the kernel sends everything to the survivor and nothing is
// lost when they close.
func goodbye() {
	handover.Leave()
	var lameduck time.Duration
	var all []*NodeCache
	live.Range(func(k, _ any) bool {
		n := k.(*NodeCache)
		all = append(all, n)
		lameduck = max(lameduck, n.cfg.Lameduck)
		return true
	})
	if len(all) == 0 {
		return
	}
	if lameduck > 0 {
		log.Infof("shutting down: readiness is false, answering for %s more (lameduck)", lameduck)
		time.Sleep(lameduck)
	}
	for _, n := range all {
		others, err := handover.Others(n.dnsAddrs())
		if err != nil {
			log.Warningf("shutting down: cannot tell whether another instance serves %s: %v", n.addrList(), err)
			continue
		}
		if len(others) == 0 {
			continue
		}
		k, err := handover.Withdraw(others, drainMax)
		if err != nil {
			log.Warningf("shutting down: handing %v over: %v", others, err)
			continue
		}
		handovers.Inc()
		log.Infof("shutting down: another instance serves %v: %d sockets handed over to it", others, k)
	}
}

// dnsAddrs are the addresses the node-local resolver answers on.
func (n *NodeCache) dnsAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(n.cfg.LocalIPs))
	for _, ip := range n.cfg.LocalIPs {
		out = append(out, netip.AddrPortFrom(ip, uint16(n.cfg.Port)))
	}
	return out
}

func (n *NodeCache) addrList() string {
	var s []string
	for _, a := range n.dnsAddrs() {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}
