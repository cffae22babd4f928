package multicluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// probeGateways dials every remote cluster's gateway addresses on the gateway port, at once.
func (m *Mesh) probeGateways(ctx context.Context) {
	m.mu.Lock()
	type job struct {
		c     *meshCluster
		addrs []netip.Addr
	}
	var jobs []job
	for _, c := range m.clusters {
		if !c.local {
			jobs = append(jobs, job{c, c.watch.gateway()})
		}
	}
	m.mu.Unlock()
	timeout := min(m.cfg.ProbeInterval, time.Second)
	errs := make([]map[netip.Addr]string, len(jobs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, j := range jobs {
		errs[i] = map[netip.Addr]string{}
		for _, a := range j.addrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{Timeout: timeout}
				conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(m.cfg.GatewayPort)).String())
				if err != nil {
					mu.Lock()
					errs[i][a] = err.Error()
					mu.Unlock()
					return
				}
				conn.Close()
			}()
		}
	}
	wg.Wait()
	m.mu.Lock()
	for i, j := range jobs {
		j.c.gwErrs = errs[i]
	}
	m.mu.Unlock()
}

// gateways updates the health of each gateway address of c at now and returns those that answer,
// the problem of the cluster when none of several does, and notes on the withdrawn ones.
func (m *Mesh) gateways(c *meshCluster, id string, addrs []netip.Addr, now time.Time) (up []netip.Addr, problem string, notes []string) {
	if c.gwHealth == nil {
		c.gwHealth = map[netip.Addr]*health{}
	}
	for a := range c.gwHealth {
		if !slices.Contains(addrs, a) {
			delete(c.gwHealth, a) // no longer a gateway address
		}
	}
	failed := 0
	for _, a := range addrs {
		h := c.gwHealth[a]
		if h == nil {
			h = &health{}
			c.gwHealth[a] = h
		}
		errText := c.gwErrs[a]
		if errText != "" {
			failed++
			errText = "gateway " + a.String() + " failed its probe: " + errText
		}
		if h.update(now, errText, m.cfg.HoldDown) && len(addrs) > 1 {
			if h.withdrawn {
				withdrawalsTotal.WithLabelValues(id, "gateway_address").Inc()
				log.Warningf("%s: cluster %s: %s; its other gateway addresses answer", m, id, errText)
			} else {
				log.Infof("%s: cluster %s: gateway %s back after %v healthy", m, id, a, m.cfg.HoldDown)
			}
		}
		if h.withdrawn {
			notes = append(notes, a.String()+" withdrawn: "+h.reason)
		} else {
			up = append(up, a)
		}
	}
	if failed > 0 && failed == len(addrs) {
		problem = "gateway probe failed: " + c.gwErrs[addrs[0]]
		if len(addrs) > 1 {
			problem = fmt.Sprintf("all %d gateway addresses failed their probes (%s: %s)", len(addrs), addrs[0], c.gwErrs[addrs[0]])
		}
	}
	return up, problem, notes
}
