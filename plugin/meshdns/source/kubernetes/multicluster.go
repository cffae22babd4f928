package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// remoteSecretLabel marks Istio's remote secrets: each data key is a cluster id, its value a
// kubeconfig for that cluster.
const remoteSecretLabel = "istio/multiCluster"

// Locality annotations read from a remote secret (meshdns's own: Istio takes locality from nodes).
const (
	regionAnnotation = "topology.kubernetes.io/region"
	zoneAnnotation   = "topology.kubernetes.io/zone"
)

// Mesh is the source of multicluster names: it follows every cluster of the mesh (this one, those
// in the Corefile and those of Istio remote secrets) and answers names under the mesh suffixes with
// the addresses of the clusters chosen by locality and health (choice.go), or with stable virtual IPs.
type Mesh struct {
	cfg  *Config
	rest *rest.Config
	mc   *Multicluster
	vips *vipAllocator
	kick chan struct{}
	// remotes are the client configurations of the Corefile's remote clusters, loaded at setup.
	remotes map[string]*rest.Config

	mu        sync.Mutex
	clusters  map[string]*meshCluster // by id; this cluster's under cfg.Cluster
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

// Mesh returns the multicluster source of the source's block, or nil when it serves no mesh suffix.
// It shares the source's client configuration for this cluster.
func (s *Source) Mesh() (*Mesh, error) {
	cfg := s.cfg
	if !cfg.Multicluster.Enabled() {
		return nil, nil
	}
	m := &Mesh{cfg: cfg, rest: s.rest, mc: &cfg.Multicluster, kick: make(chan struct{}, 1), clusters: map[string]*meshCluster{},
		remotes: map[string]*rest.Config{}}
	var err error
	if len(m.mc.VIPs) > 0 {
		if m.vips, err = newVIPAllocator(m.mc.VIPs, m.mc.VIPState); err != nil {
			return nil, err
		}
	}
	for _, r := range m.mc.Remotes {
		if m.remotes[r.ID], err = kubeconfigRest(r.Kubeconfig, r.Context, nil); err != nil {
			return nil, fmt.Errorf("remote %s: %w", r.ID, err)
		}
	}
	s.meshCfg = m // its debug endpoint is served with ours
	return m, nil
}

// Kind implements source.Source.
func (m *Mesh) Kind() string { return "multicluster" }

// String implements source.Source.
func (m *Mesh) String() string {
	return "multicluster " + m.cfg.Cluster + " " + strings.Join(m.mc.Suffixes, ",") + " (" + m.cfg.String() + ")"
}

// StartupTimeout is how long CoreDNS's start waits for the first table.
func (m *Mesh) StartupTimeout() time.Duration { return m.cfg.StartupTimeout }

func (m *Mesh) signal() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// add starts watching a cluster.
func (m *Mesh) add(id string, rc *rest.Config, network string, loc Locality, local bool, secret string) {
	w, err := newClusterWatch(id, rc, m.mc, network, loc, m.signal)
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
	m.add(m.cfg.Cluster, m.rest, m.mc.Network, m.mc.Locality, true, "")
	for _, r := range m.mc.Remotes {
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
	if m.mc.RemoteSecrets != "" {
		stop := m.watchSecrets(ctx)
		defer stop()
	}

	// The first table waits until every cluster known now has listed, or the startup timeout.
	deadline := time.Now().Add(m.cfg.StartupTimeout)
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
	probe := time.NewTicker(m.mc.ProbeInterval)
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
		if !c.watch.synced() {
			return false
		}
	}
	return true
}

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
	timeout := min(m.mc.ProbeInterval, time.Second)
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
				conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(m.mc.GatewayPort)).String())
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
		if h.update(now, errText, m.mc.HoldDown) && len(addrs) > 1 {
			if h.withdrawn {
				withdrawalsTotal.WithLabelValues(id, "gateway_address").Inc()
				log.Warningf("%s: cluster %s: %s; its other gateway addresses answer", m, id, errText)
			} else {
				log.Infof("%s: cluster %s: gateway %s back after %v healthy", m, id, a, m.mc.HoldDown)
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
			case now.Sub(lastOK) > m.mc.Lease:
				problem, reason = fmt.Sprintf("API server unreachable since %s (lease %v): %s", lastOK.Format(time.TimeOnly), m.mc.Lease, apiErr), "api"
			case gwProblem != "":
				problem, reason = gwProblem, "gateway"
			}
			if c.health.update(now, problem, m.mc.HoldDown) {
				if c.health.withdrawn {
					withdrawalsTotal.WithLabelValues(id, reason).Inc()
					clusterAvailable.WithLabelValues(id).Dec()
					log.Warningf("%s: cluster %s withdrawn: %s", m, id, problem)
				} else {
					clusterAvailable.WithLabelValues(id).Inc()
					log.Infof("%s: cluster %s back after %v healthy", m, id, m.mc.HoldDown)
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
		for _, suffix := range m.mc.Suffixes {
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

// watchSecrets follows Istio remote secrets in this cluster: each adds the clusters it names, and
// removing it drops them, without a restart.
func (m *Mesh) watchSecrets(ctx context.Context) func() {
	kube, err := kubernetes.NewForConfig(m.rest)
	if err != nil {
		log.Errorf("%s: remote secrets: %v", m, err)
		return func() {}
	}
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(m.mc.RemoteSecrets),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = remoteSecretLabel + "=true" }))
	inf := f.Core().V1().Secrets().Informer()
	apply := func(obj any, gone bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		sec, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		key := sec.Namespace + "/" + sec.Name
		// Drop the clusters this secret added that it no longer names.
		m.mu.Lock()
		var drop []string
		for id, c := range m.clusters {
			if _, still := sec.Data[id]; c.secret == key && (gone || !still) {
				drop = append(drop, id)
			}
		}
		m.mu.Unlock()
		for _, id := range drop {
			m.remove(id)
		}
		if gone {
			return
		}
		loc := Locality{Region: sec.Annotations[regionAnnotation], Zone: sec.Annotations[zoneAnnotation]}
		ids := make([]string, 0, len(sec.Data))
		for id := range sec.Data {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if id == m.cfg.Cluster {
				continue // Istio puts no secret for the local cluster; ignore one that does
			}
			m.mu.Lock()
			c, exists := m.clusters[id]
			m.mu.Unlock()
			if exists && c.secret != key {
				log.Warningf("%s: remote secret %s names cluster %s, already watched; ignored", m, key, id)
				continue
			}
			rc, err := kubeconfigRest("", "", sec.Data[id])
			if err != nil {
				log.Errorf("%s: remote secret %s: cluster %s: %v", m, key, id, err)
				continue
			}
			m.add(id, rc, "", loc, false, key)
		}
	}
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { apply(obj, false) },
		UpdateFunc: func(_, obj any) { apply(obj, false) },
		DeleteFunc: func(obj any) { apply(obj, true) },
	})
	must(err)
	sctx, cancel := context.WithCancel(ctx)
	f.Start(sctx.Done())
	waitSynced(sctx, []cache.InformerSynced{inf.HasSynced})
	return func() { cancel(); f.Shutdown() }
}

// Explanation is the debug endpoint's answer.
type Explanation struct {
	Name       string      `json:"name"`
	Client     string      `json:"client,omitempty"`
	Service    string      `json:"service"`
	Cluster    string      `json:"cluster,omitempty"` // the cluster the name is qualified with
	Answer     []string    `json:"answer"`
	VIPs       bool        `json:"vips"`
	Candidates []Candidate `json:"clusters"`
	Note       string      `json:"note,omitempty"`
}

func (m *Mesh) explain(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	key, cluster, _, ok := meshNames(name, m.mc.Suffixes)
	if !ok {
		http.Error(w, fmt.Sprintf("%q is not a mesh name: want SERVICE.NAMESPACE[.CLUSTER].SUFFIX with a suffix of %v", name, m.mc.Suffixes), http.StatusBadRequest)
		return
	}
	ex := Explanation{Name: name, Service: key, Cluster: cluster, VIPs: m.vips != nil, Answer: []string{}}
	if c := r.URL.Query().Get("client"); c != "" {
		if _, err := netip.ParseAddr(c); err != nil {
			http.Error(w, fmt.Sprintf("client %q is not an IP address", c), http.StatusBadRequest)
			return
		}
		ex.Client = c
		ex.Note = "every client of this resolver gets the same choice: it is made for this resolver's cluster, network and locality"
	}
	m.mu.Lock()
	ex.Candidates = m.decided[key]
	for _, a := range m.answers[key] {
		ex.Answer = append(ex.Answer, a.String())
	}
	m.mu.Unlock()
	if ex.Candidates == nil {
		ex.Note = "no cluster exports this service"
	}
	if cluster != "" {
		ex.Answer = []string{}
		m.mu.Lock()
		for _, a := range m.qualified[key+"|"+cluster] {
			ex.Answer = append(ex.Answer, a.String())
		}
		m.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(ex)
}
