// Package multicluster is the source of multicluster names: it follows every cluster of the mesh
// (this one, those of the Corefile and those of Istio remote secrets) and answers names under the
// mesh suffixes with the addresses of the clusters chosen by locality and health of their east-west
// gateways, or with stable virtual IPs. Its options are written in the kubernetes block of this
// cluster (Config implements kubernetes.Extension), and it watches this cluster with that block's
// client configuration (Local).
package multicluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/client-go/rest"
)

var log = clog.NewWithPlugin("meshdns")

// coalesce is the shortest time between two tables: a burst of changes (a rollout in a remote
// cluster) becomes one table, as in the kubernetes source.
const coalesce = 50 * time.Millisecond

// Mesh is the source of multicluster names: it follows every cluster of the mesh (this one, those
// in the Corefile and those of Istio remote secrets) and answers names under the mesh suffixes with
// the addresses of the clusters chosen by locality and health (choice.go), or with stable virtual IPs.
type Mesh struct {
	cfg   *Config
	local Local
	vips  *vipAllocator
	kick  chan struct{}
	// remotes are the client configurations of the Corefile's remote clusters, loaded at setup.
	remotes map[string]*rest.Config

	mu        sync.Mutex
	clusters  map[string]*meshCluster // by id; this cluster's under local.Cluster
	decided   map[string][]Candidate  // last choice per service key, for the debug endpoint
	answers   map[string][]netip.Addr // last answer per service key
	qualified map[string][]netip.Addr // last answer per "key|cluster", for cluster-qualified names
}

// meshCluster is one cluster of the mesh with its watch and health.
type meshCluster struct {
	watch  *clusterWatch
	local  bool
	secret string // "ns/name" of the remote secret that added it
	health health
	// gwErrs are the last probe's failures by gateway address; gwHealth withdraws and returns each
	// address on its own, so that one failing address of several leaves the others answering.
	gwErrs   map[netip.Addr]string
	gwHealth map[netip.Addr]*health
}

// Local is what the kubernetes source of the same block shares with this one: this cluster's id and
// client configuration, and the kubernetes source's name and startup timeout. The local cluster's
// clients come from there, so that a block's two sources reach it alike.
type Local struct {
	Cluster        string
	Rest           *rest.Config
	Source         string // the kubernetes source's String: ours includes it
	StartupTimeout time.Duration
}

// New returns the multicluster source of cfg (which serves mesh suffixes) for the local cluster.
// Its debug endpoint is itself, an http.Handler, served by the kubernetes source (/multicluster).
func New(cfg *Config, local Local) (*Mesh, error) {
	m := &Mesh{cfg: cfg, local: local, kick: make(chan struct{}, 1), clusters: map[string]*meshCluster{},
		remotes: map[string]*rest.Config{}}
	if local.Rest != nil {
		kubewatch.Want(local.Rest, serviceNeeds) // this cluster's Services come from the shared informers
	}
	var err error
	if len(cfg.VIPs) > 0 {
		if m.vips, err = newVIPAllocator(cfg.VIPs, cfg.VIPState); err != nil {
			return nil, err
		}
	}
	for _, r := range cfg.Remotes {
		if m.remotes[r.ID], err = kubewatch.RestConfig(r.Kubeconfig, r.Context, nil); err != nil {
			return nil, fmt.Errorf("remote %s: %w", r.ID, err)
		}
	}
	return m, nil
}

// Kind implements source.Source.
func (m *Mesh) Kind() string { return "multicluster" }

// String implements source.Source.
func (m *Mesh) String() string {
	return "multicluster " + m.local.Cluster + " " + strings.Join(m.cfg.Suffixes, ",") + " (" + m.local.Source + ")"
}

// StartupTimeout is how long CoreDNS's start waits for the first table.
func (m *Mesh) StartupTimeout() time.Duration { return m.local.StartupTimeout }

func (m *Mesh) signal() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// add starts watching a cluster.
func (m *Mesh) add(id string, rc *rest.Config, network string, loc Locality, local bool, secret string) {
	w, err := newClusterWatch(id, rc, m.cfg, network, loc, local, m.signal)
	if err != nil {
		log.Errorf("%s: cluster %s: %v", m, id, err)
		return
	}
	clusterAvailable.WithLabelValues(id).Inc()
	m.mu.Lock()
	old := m.clusters[id]
	m.clusters[id] = &meshCluster{watch: w, local: local, secret: secret}
	m.mu.Unlock()
	if old != nil {
		old.stop()
	}
	log.Infof("%s: watching cluster %s", m, id)
	m.signal()
}

// remove stops watching a cluster.
func (m *Mesh) remove(id string) {
	m.mu.Lock()
	c := m.clusters[id]
	delete(m.clusters, id)
	m.mu.Unlock()
	if c != nil {
		c.stop()
		log.Infof("%s: cluster %s dropped", m, id)
		m.signal()
	}
}

// stop ends the cluster's watch and takes it out of the available count.
func (c *meshCluster) stop() {
	c.watch.stop()
	if !c.health.withdrawn {
		clusterAvailable.WithLabelValues(c.watch.id).Dec()
	}
}

// Run implements source.Source.
func (m *Mesh) Run(ctx context.Context, sink source.Sink) {
	m.add(m.local.Cluster, m.local.Rest, m.cfg.Network, m.cfg.Locality, true, "")
	for _, r := range m.cfg.Remotes {
		m.add(r.ID, m.remotes[r.ID], r.Network, r.Locality, false, "")
	}
	defer func() {
		m.mu.Lock()
		ids := make([]string, 0, len(m.clusters))
		for id := range m.clusters {
			ids = append(ids, id)
		}
		m.mu.Unlock()
		for _, id := range ids {
			m.remove(id)
		}
	}()
	if m.cfg.RemoteSecrets != "" {
		stop := m.watchSecrets(ctx)
		defer stop()
	}

	// The first table waits until every cluster known now has listed, or the startup timeout.
	deadline := time.Now().Add(m.local.StartupTimeout)
	for !m.allSynced() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	m.probeGateways(ctx)
	var last []table.Entry
	published := false
	probe := time.NewTicker(m.cfg.ProbeInterval)
	defer probe.Stop()
	for {
		entries := m.entries(time.Now())
		if !published || !sameEntries(last, entries) {
			sink.Publish(entries)
			last, published = entries, true
		}
		select {
		case <-ctx.Done():
			return
		case <-probe.C:
			m.probeGateways(ctx)
		case <-m.kick:
			select { // gather a burst
			case <-ctx.Done():
				return
			case <-time.After(coalesce):
			}
		}
	}
}

func (m *Mesh) allSynced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.clusters {
		if !c.watch.hasSynced() {
			return false
		}
	}
	return true
}

// views updates every cluster's health at now and returns the clusters as the choice sees them,
// this cluster first.
func (m *Mesh) views(now time.Time) []*clusterView {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*clusterView
	for id, c := range m.clusters {
		w := c.watch
		v := &clusterView{ID: id, Local: c.local, Network: w.networkOf(), Locality: w.locality, Exports: w.exported()}
		if !c.local {
			up, gwProblem, notes := m.gateways(c, id, w.gateway(), now)
			v.Gateway = up
			problem, reason := "", ""
			lastOK, apiErr := w.api()
			switch {
			case now.Sub(lastOK) > m.cfg.Lease:
				problem, reason = fmt.Sprintf("API server unreachable since %s (lease %v): %s", lastOK.Format(time.TimeOnly), m.cfg.Lease, apiErr), "api"
			case gwProblem != "":
				problem, reason = gwProblem, "gateway"
			}
			if c.health.update(now, problem, m.cfg.HoldDown) {
				if c.health.withdrawn {
					withdrawalsTotal.WithLabelValues(id, reason).Inc()
					clusterAvailable.WithLabelValues(id).Dec()
					log.Warningf("%s: cluster %s withdrawn: %s", m, id, problem)
				} else {
					clusterAvailable.WithLabelValues(id).Inc()
					log.Infof("%s: cluster %s back after %v healthy", m, id, m.cfg.HoldDown)
				}
			}
			v.Withdrawn, v.Health = c.health.withdrawn, c.health.reason
			if !v.Withdrawn && len(notes) > 0 {
				v.Health = "healthy; gateway " + strings.Join(notes, "; ")
			}
		}
		if v.Health == "" {
			v.Health = "healthy"
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *clusterView) int {
		switch {
		case a.Local != b.Local:
			if a.Local {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// entries computes the mesh names at now.
func (m *Mesh) entries(now time.Time) []table.Entry {
	views := m.views(now)
	if len(views) == 0 || !views[0].Local {
		return nil
	}
	keys := sortedKeys(views)
	var vips map[string][]netip.Addr
	if m.vips != nil {
		var err error
		if vips, err = m.vips.sync(keys); err != nil {
			log.Errorf("%s: %v", m, err)
		}
	}
	decided := make(map[string][]Candidate, len(keys))
	answers := make(map[string][]netip.Addr, len(keys))
	qualified := make(map[string][]netip.Addr)
	tiers := map[string]int{}
	var out []table.Entry
	for _, key := range keys {
		ns, name, _ := strings.Cut(key, "/")
		addrs, cands := choose(views, key)
		decided[key], answers[key] = cands, addrs
		tier := tierNames[tierNone]
		for _, c := range cands {
			if c.Chosen {
				tier = c.Tier
			}
		}
		tiers[tier]++
		answer := addrs
		if m.vips != nil && len(addrs) > 0 {
			answer = vips[key]
		}
		for _, suffix := range m.cfg.Suffixes {
			if len(answer) > 0 {
				out = append(out, table.Entry{Host: name + "." + ns + "." + suffix, Addrs: answer, Registry: table.RegistryExternal})
			}
			for _, v := range views {
				if _, exports := v.Exports[key]; !exports || v.Withdrawn {
					continue
				}
				a := v.Gateway
				if v.Local {
					a = v.Exports[key].clusterIPs
				}
				if len(a) > 0 {
					out = append(out, table.Entry{Host: name + "." + ns + "." + v.ID + "." + suffix, Addrs: a, Registry: table.RegistryExternal, Cluster: v.ID})
					qualified[key+"|"+v.ID] = a
				}
			}
		}
	}
	for _, t := range tierNames {
		meshServices.WithLabelValues(t).Set(float64(tiers[t]))
	}
	m.mu.Lock()
	m.decided, m.answers, m.qualified = decided, answers, qualified
	m.mu.Unlock()
	var valid []table.Entry
	for _, e := range out {
		if err := table.ValidateHost(e.Host); err != nil {
			log.Warningf("%s: %v; left out", m, err)
			continue
		}
		valid = append(valid, e)
	}
	return valid
}

func sameEntries(a, b []table.Entry) bool {
	return slices.EqualFunc(a, b, func(x, y table.Entry) bool {
		return x.Host == y.Host && slices.Equal(x.Addrs, y.Addrs)
	})
}
