package ambient

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/coredns/coredns/plugin/pkg/reuseport"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// Explanation is the debug endpoint's answer: what the Address resources say of a name, what the
// table answers for it, and to which client.
type Explanation struct {
	Name      string        `json:"name"`
	Client    *ClientInfo   `json:"client,omitempty"`
	Services  []ServiceInfo `json:"services"`
	Answer    []string      `json:"answer"`
	VisibleTo []string      `json:"visibleTo,omitempty"`
	Note      string        `json:"note,omitempty"`
}

// ClientInfo is what the workloads say of a client address.
type ClientInfo struct {
	Address string `json:"address"`
	// Namespace is the one its workloads give, "" when none does (the block's then applies).
	Namespace string   `json:"namespace"`
	Workloads []string `json:"workloads"`
	Sees      bool     `json:"sees"` // whether the name is answered to this client
}

// ServiceInfo is one Service resource of the name, with its VIPs and, when headless, its workloads.
type ServiceInfo struct {
	Resource      string         `json:"resource"`
	Canonical     bool           `json:"canonical"`
	NamespaceOnly bool           `json:"namespaceOnly"`
	VIPs          []string       `json:"vips"` // network/address, "(range)" and "(other network)" marking those left out
	Workloads     []WorkloadInfo `json:"workloads,omitempty"`
}

// WorkloadInfo is a workload of a headless Service.
type WorkloadInfo struct {
	Resource string   `json:"resource"`
	Addrs    []string `json:"addresses"`
	Healthy  bool     `json:"healthy"`
	Network  string   `json:"network,omitempty"`
}

// serveDebug serves /ambient?name=NAME[&client=IP] on addr until the returned stop is called.
func (s *Source) serveDebug(addr string) (func(), error) {
	// With SO_REUSEPORT, as CoreDNS's own listeners: on a reload the new instance binds while the old
	// one still holds the address.
	l, err := reuseport.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ambient", s.explain)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Errorf("%s: debug endpoint: %v", s, err)
		}
	}()
	return func() { srv.Close() }, nil
}

func (s *Source) explain(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if err := table.ValidateHost(name); err != nil || strings.HasPrefix(name, "*") {
		http.Error(w, fmt.Sprintf("name %q is not a host name (give it whole: name.namespace.svc.DOMAIN, not a short form)", name), http.StatusBadRequest)
		return
	}
	var client netip.Addr
	if c := r.URL.Query().Get("client"); c != "" {
		a, err := netip.ParseAddr(c)
		if err != nil {
			http.Error(w, fmt.Sprintf("client %q is not an IP address", c), http.StatusBadRequest)
			return
		}
		client = a.Unmap()
	}
	h := s.current.Load()
	if h == nil {
		http.Error(w, "no push from the control plane yet", http.StatusServiceUnavailable)
		return
	}
	h.mu.Lock()
	ex := h.idx.explain(table.CanonicalHost(name), client, s.cfg.namespace())
	h.mu.Unlock()
	ex.Name = name
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(ex)
}

// explain describes canonical host h (a Service's, or a pod's of a headless one) for client (when
// valid), who has the namespace blockNS unless its workloads say otherwise.
func (x *index) explain(h string, client netip.Addr, blockNS string) Explanation {
	ex := Explanation{Services: []ServiceInfo{}, Answer: []string{}}
	host := h
	for svc, pods := range x.podHosts {
		if _, ok := pods[h]; ok {
			host = svc // a per-pod name: explain its Service
			ex.Note = "a pod's name under the headless Service " + strings.TrimSuffix(svc, ".")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(x.byHost[host])) {
		s := x.services[name]
		si := ServiceInfo{Resource: name, Canonical: s.Canonical, NamespaceOnly: s.NamespaceOnly, VIPs: []string{}}
		for _, a := range s.Addresses {
			v := a.Network + "/" + a.Addr.String()
			switch {
			case a.CIDR:
				v += " (range)"
			case !x.onNetwork(a.Network):
				v += " (other network)"
			}
			si.VIPs = append(si.VIPs, v)
		}
		if len(s.Addresses) == 0 && x.isKube(s) {
			for _, wn := range slices.Sorted(maps.Keys(x.members[s.Namespace+"/"+s.Hostname])) {
				wl := x.workloads[wn]
				wi := WorkloadInfo{Resource: wn, Healthy: wl.Healthy, Network: wl.Network, Addrs: []string{}}
				for _, a := range wl.Addrs {
					wi.Addrs = append(wi.Addrs, a.String())
				}
				si.Workloads = append(si.Workloads, wi)
			}
		}
		ex.Services = append(ex.Services, si)
	}
	main, pods := x.hostEntries(host)
	var e *table.Entry
	if host != h {
		if p, ok := pods[h]; ok {
			e = &p
		}
	} else if len(main) > 0 {
		e = &main[0]
	}
	switch {
	case len(ex.Services) == 0:
		ex.Note = "no Service resource names this host"
	case e == nil:
		ex.Note = "not answered: no VIP on this network, or no healthy workload here"
	default:
		for _, a := range e.Addrs {
			ex.Answer = append(ex.Answer, a.String())
		}
		ex.VisibleTo = e.VisibleTo
	}
	if client.IsValid() {
		ci := &ClientInfo{Address: client.String(), Workloads: append([]string{}, x.byAddr[client]...)}
		ns, known := x.namespaceOf(client)
		if known {
			ci.Namespace = ns
		} else {
			ns = blockNS
		}
		ci.Sees = e != nil && e.SeenFrom(ns)
		ex.Client = ci
	}
	return ex
}
