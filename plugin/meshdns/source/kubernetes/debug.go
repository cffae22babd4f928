package kubernetes

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/coredns/coredns/plugin/pkg/reuseport"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/apimachinery/pkg/util/validation"
)

// serveDebug serves, on the debug address, /visibility?host=HOST&namespace=NS (or &client=IP) and
// the handlers of HandleDebug (with mesh names, multicluster's /multicluster), until the returned
// stop is called.
func (s *Source) serveDebug() (func(), error) {
	// With SO_REUSEPORT, as CoreDNS's own listeners: on a reload the new instance binds while the old
	// one still holds the address.
	l, err := reuseport.Listen("tcp", s.cfg.Debug)
	if err != nil {
		return nil, fmt.Errorf("kubernetes debug: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/visibility", s.explainVisibility)
	for path, h := range s.debug {
		mux.Handle(path, h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Errorf("%s: debug endpoint: %v", s, err)
		}
	}()
	return func() { srv.Close() }, nil
}

// VisibilityExplanation is /visibility's answer: whether a client of a namespace sees a host, and why.
type VisibilityExplanation struct {
	Host      string `json:"host"`
	Namespace string `json:"namespace"`
	Client    string `json:"client,omitempty"`
	Visible   bool   `json:"visible"`
	// Answer is what the client gets: the addresses, or the alias of an ExternalName Service.
	Answer  []string            `json:"answer"`
	Sidecar *SidecarExplanation `json:"sidecar"` // null: no Sidecar applies, every host is imported
	Mesh    MeshExplanation     `json:"mesh"`
	Objects []ObjectExplanation `json:"objects"`
	Note    string              `json:"note,omitempty"`
}

// SidecarExplanation is the Sidecar that applies to the namespace.
type SidecarExplanation struct {
	Name   string   `json:"name"`
	Root   bool     `json:"root"` // the mesh root namespace's, applying to namespaces without their own
	Egress []string `json:"egress"`
}

// MeshExplanation is the mesh config in force.
type MeshExplanation struct {
	File                   string   `json:"file,omitempty"`
	RootNamespace          string   `json:"rootNamespace"`
	DefaultServiceExportTo []string `json:"defaultServiceExportTo"`
	Sidecars               bool     `json:"sidecarsWatched"`
}

// ObjectExplanation is one object naming the host, as the namespace sees it.
type ObjectExplanation struct {
	Object       string   `json:"object"`
	ExportTo     []string `json:"exportTo"`
	ExportToFrom string   `json:"exportToFrom"` // the object's field, or the mesh default
	Exported     bool     `json:"exported"`
	Imported     bool     `json:"imported"`
	ImportedBy   string   `json:"importedBy,omitempty"` // the egress host importing or excluding it
	Answers      bool     `json:"answers"`
	Why          string   `json:"why"`
}

func (s *Source) explainVisibility(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	host, ns := q.Get("host"), q.Get("namespace")
	ex := VisibilityExplanation{Host: host, Namespace: ns, Answer: []string{}, Objects: []ObjectExplanation{}}
	if c := q.Get("client"); c != "" {
		a, err := netip.ParseAddr(c)
		if err != nil {
			http.Error(w, fmt.Sprintf("client %q is not an IP address", c), http.StatusBadRequest)
			return
		}
		ex.Client = c
		if cns, ok := s.NamespaceOf(a); ok {
			ns, ex.Namespace = cns, cns
		} else if ns == "" {
			http.Error(w, fmt.Sprintf("client %s: no pod known with this address (the source learns pods with 'clients'): give namespace=NS", c), http.StatusBadRequest)
			return
		}
	}
	if err := table.ValidateHost(host); err != nil {
		http.Error(w, fmt.Sprintf("host: %v", err), http.StatusBadRequest)
		return
	}
	if len(validation.IsDNS1123Label(ns)) > 0 {
		http.Error(w, fmt.Sprintf("namespace %q is not a namespace name: give namespace=NS or client=IP", ns), http.StatusBadRequest)
		return
	}
	s.view.RLock()
	s.explain(&ex)
	s.view.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(ex)
}

// explain fills ex for its host and namespace; the caller holds s.view.
func (s *Source) explain(ex *VisibilityExplanation) {
	v := &s.vis
	ex.Mesh = MeshExplanation{File: v.defaults.File, RootNamespace: v.defaults.rootNamespace(),
		DefaultServiceExportTo: v.defaults.serviceExportTo(), Sidecars: s.cfg.Sidecars}
	cands, rest := s.candidates(table.CanonicalHost(ex.Host))
	if len(cands) == 0 {
		if len(rest) > 0 {
			ex.Visible = true
			ex.Answer = answerOf(rest)
			ex.Note = "named by objects exportTo and Sidecars do not apply to (ServiceImports, zones): every namespace sees it"
		} else {
			ex.Note = "no Service or ServiceEntry names this host"
		}
		return
	}
	exs := make([]exported, len(cands))
	for i, c := range cands {
		exs[i] = effectiveExportTo(c.exportTo, c.field, c.ns, &v.defaults)
	}
	ch := v.choose(ex.Namespace, cands, exs)
	if sc := ch.sidecar; sc != nil {
		ex.Sidecar = &SidecarExplanation{Name: sc.name, Root: v.own[ex.Namespace] == nil, Egress: sc.egress()}
	}
	var winners []table.Entry
	for _, i := range ch.winners {
		winners = append(winners, cands[i].entries...)
	}
	ex.Visible = len(winners) > 0
	ex.Answer = answerOf(winners)
	for i, c := range cands {
		o := ObjectExplanation{Object: c.object(), ExportTo: exs[i].values, ExportToFrom: exs[i].from, Exported: ch.exported[i],
			Imported: ch.imported[i], ImportedBy: ch.importedBy[i], Answers: slices.Contains(ch.winners, i)}
		switch {
		case !o.Exported:
			o.Why = fmt.Sprintf("not exported to %s: exportTo %v (%s)", ex.Namespace, exs[i].values, exs[i].from)
		case !o.Imported:
			o.Why = fmt.Sprintf("not imported by Sidecar %s: %s", ch.sidecar.name, ch.importedBy[i])
		case o.Answers:
			o.Why = "answers"
		case len(ch.winners) > 0 && cands[ch.winners[0]].ns == ex.Namespace:
			o.Why = "the object of the client's own namespace answers"
		case len(ch.winners) > 0 && cands[ch.winners[0]].kube:
			o.Why = "a Kubernetes Service answers: it beats a ServiceEntry"
		default:
			o.Why = "an object of another namespace answers: those exported by name first, then the oldest"
		}
		ex.Objects = append(ex.Objects, o)
	}
}

func answerOf(entries []table.Entry) []string {
	out := []string{}
	for _, e := range entries {
		if e.Alias != "" {
			out = append(out, "CNAME "+e.Alias)
		}
		for _, a := range e.Addrs {
			out = append(out, a.String())
		}
	}
	return out
}
