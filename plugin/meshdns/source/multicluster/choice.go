package multicluster

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
)

// The choice of the clusters that answer a mesh name. A service exported by several clusters is
// answered with the addresses of the best tier that has any: this cluster while it has ready
// endpoints (its own cluster IPs), else remote clusters' east-west gateways on this cluster's
// network, then in its zone, then its region, then anywhere. A remote cluster whose gateway fails
// its probe, or whose API server has not answered for a lease, is withdrawn until it has been
// healthy for the hold-down time.

// Tiers, best first.
const (
	tierLocal = iota
	tierNetwork
	tierZone
	tierRegion
	tierAny
	tierNone // not a candidate
)

var tierNames = [...]string{"this cluster", "same network", "same zone", "same region", "another region", "not a candidate"}

// clusterView is one cluster as the choice sees it at one moment.
type clusterView struct {
	ID        string
	Local     bool
	Network   string
	Locality  Locality
	Withdrawn bool
	Health    string // why withdrawn, or how it is doing
	Gateway   []netip.Addr
	Exports   map[string]exportedService
}

// Candidate is one cluster considered for a name, with the verdict: what the debug endpoint shows.
type Candidate struct {
	Cluster  string   `json:"cluster"`
	Network  string   `json:"network,omitempty"`
	Locality string   `json:"locality,omitempty"`
	Tier     string   `json:"tier"`
	Chosen   bool     `json:"chosen"`
	Why      string   `json:"why"`
	Addrs    []string `json:"addresses,omitempty"`
}

// choose returns the addresses answered for the service key ("ns/name") and every cluster's verdict.
// clusters[0] is this cluster.
func choose(clusters []*clusterView, key string) ([]netip.Addr, []Candidate) {
	local := clusters[0]
	cands := make([]Candidate, len(clusters))
	tiers := make([]int, len(clusters))
	addrs := make([][]netip.Addr, len(clusters))
	best := tierNone
	for i, c := range clusters {
		tier, why, a := judge(local, c, key)
		tiers[i], addrs[i] = tier, a
		cands[i] = Candidate{Cluster: c.ID, Network: c.Network, Locality: c.Locality.String(), Tier: tierNames[tier], Why: why}
		for _, x := range a {
			cands[i].Addrs = append(cands[i].Addrs, x.String())
		}
		best = min(best, tier)
	}
	var out []netip.Addr
	for i := range clusters {
		if best != tierNone && tiers[i] == best {
			cands[i].Chosen = true
			out = kubewatch.AppendNew(out, addrs[i])
		} else if tiers[i] != tierNone {
			cands[i].Why += fmt.Sprintf("; a better tier (%s) answers", tierNames[best])
		}
	}
	return out, cands
}

// judge places cluster c for key, says why, and gives the addresses it would answer with.
func judge(local, c *clusterView, key string) (int, string, []netip.Addr) {
	svc, ok := c.Exports[key]
	switch {
	case !ok:
		return tierNone, "does not export it", nil
	case c.Withdrawn:
		return tierNone, "withdrawn: " + c.Health, nil
	case svc.ready == 0:
		return tierNone, "exports it without ready endpoints", nil
	case c.Local:
		if len(svc.clusterIPs) == 0 {
			return tierNone, "exports it without a cluster IP (headless)", nil
		}
		return tierLocal, fmt.Sprintf("%d ready endpoints here", svc.ready), svc.clusterIPs
	case len(c.Gateway) == 0:
		return tierNone, "has no east-west gateway address", nil
	}
	why := fmt.Sprintf("%d ready endpoints behind its gateway", svc.ready)
	switch {
	case local.Network != "" && c.Network == local.Network:
		return tierNetwork, why, c.Gateway
	case local.Locality.Region != "" && c.Locality == local.Locality && local.Locality.Zone != "":
		return tierZone, why, c.Gateway
	case local.Locality.Region != "" && c.Locality.Region == local.Locality.Region:
		return tierRegion, why, c.Gateway
	}
	return tierAny, why, c.Gateway
}

// health is the withdrawal state of one remote cluster.
type health struct {
	withdrawn    bool
	reason       string
	healthySince time.Time // start of the current healthy spell; zero while failing
}

// update folds one observation in: problem is "" when the cluster is healthy now. It returns true
// when the cluster was withdrawn or returned by this observation.
func (h *health) update(now time.Time, problem string, holdDown time.Duration) bool {
	if problem != "" {
		h.healthySince = time.Time{}
		h.reason = problem
		if !h.withdrawn {
			h.withdrawn = true
			return true
		}
		return false
	}
	if h.healthySince.IsZero() {
		h.healthySince = now
	}
	if h.withdrawn {
		back := h.healthySince.Add(holdDown)
		if !now.Before(back) {
			h.withdrawn, h.reason = false, ""
			return true
		}
		h.reason = fmt.Sprintf("healthy since %s, returns after the hold-down at %s", h.healthySince.Format(time.TimeOnly), back.Format(time.TimeOnly))
	}
	return false
}

// meshNames splits a mesh name into the service key, the cluster it is qualified with ("" for
// none) and the suffix: reviews.default.global, reviews.default.west.global.
func meshNames(name string, suffixes []string) (key, cluster, suffix string, ok bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, s := range suffixes {
		rest, found := strings.CutSuffix(name, "."+s)
		if !found {
			continue
		}
		parts := strings.Split(rest, ".")
		switch len(parts) {
		case 2:
			return parts[1] + "/" + parts[0], "", s, true
		case 3:
			return parts[1] + "/" + parts[0], parts[2], s, true
		}
	}
	return "", "", "", false
}

// sortedKeys returns the keys of services any cluster exports, sorted.
func sortedKeys(clusters []*clusterView) []string {
	var keys []string
	for _, c := range clusters {
		for k := range c.Exports {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
