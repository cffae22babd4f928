package multicluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
)

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

// ServeHTTP is the /multicluster debug endpoint: ?name=MESH-NAME[&client=IP] explains the choice of
// the clusters answering the name.
func (m *Mesh) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	key, cluster, _, ok := meshNames(name, m.cfg.Suffixes)
	if !ok {
		http.Error(w, fmt.Sprintf("%q is not a mesh name: want SERVICE.NAMESPACE[.CLUSTER].SUFFIX with a suffix of %v", name, m.cfg.Suffixes), http.StatusBadRequest)
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
