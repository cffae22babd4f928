package kubernetes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Which client namespaces see which object's names, as istiod decides for each sidecar's name table
// (pilot/pkg/model: PushContext.initServiceRegistry and IsServiceVisible for exportTo,
// SidecarScope and IstioEgressListenerWrapper.selectServices for Sidecar egress hosts, and
// pkg/dns/server BuildNameTable for the table itself).

// exportToAnnotation is a Service's exportTo: namespaces separated by commas.
const exportToAnnotation = "networking.istio.io/exportTo"

// Special exportTo values (pkg/config/visibility).
const (
	exportPublic  = "*"
	exportPrivate = "."
	exportNone    = "~"
)

// otherNamespace stands for every namespace that no object, exportTo list or Sidecar names: they
// all see the same names. No namespace can have this name.
const otherNamespace = "\x00other"

// exported is an object's effective exportTo.
type exported struct {
	public bool     // "*" among the values: every namespace, whatever else is listed
	to     []string // otherwise these namespaces ("." made the object's own); none for "~"
	from   string   // where the values came from, for the debug endpoint
	values []string
}

// effectiveExportTo reads an object's exportTo values as istiod does: none given means the mesh's
// defaultServiceExportTo; "*" anywhere makes it public; otherwise "~" anywhere hides it from every
// namespace; "." is the object's namespace; anything else names a namespace.
func effectiveExportTo(values []string, field, ns string, d *meshDefaults) exported {
	ex := exported{from: field, values: values}
	if len(values) == 0 {
		ex.values, ex.from = d.serviceExportTo(), "meshConfig defaultServiceExportTo"
		if d.File != "" {
			ex.from += " (" + d.File + ")"
		}
	}
	if slices.Contains(ex.values, exportPublic) {
		ex.public = true
		return ex
	}
	if slices.Contains(ex.values, exportNone) {
		return ex
	}
	for _, v := range ex.values {
		if v == exportPrivate {
			v = ns
		}
		// "" (from "a,,b") names no namespace, nor does anything else that is not a namespace name
		// ("Shop"): no client's namespace can match it, whatever case the table compares in.
		if len(validation.IsDNS1123Label(v)) == 0 && !slices.Contains(ex.to, v) {
			ex.to = append(ex.to, v)
		}
	}
	slices.Sort(ex.to)
	return ex
}

// visibleTo reports whether namespace ns may see the object; explicit, whether through a list
// (istiod puts those before the public ones when it picks among several objects of one host).
func (ex *exported) visibleTo(ns string) (visible, explicit bool) {
	if ex.public {
		return true, false
	}
	if slices.Contains(ex.to, ns) {
		return true, true
	}
	return false, false
}

// checkExportTo reports exportTo values that istiod's validation refuses; they still apply as istiod
// applies them (an unknown value names a namespace nobody has).
func checkExportTo(values []string, object, field string) []error {
	var errs []error
	for _, v := range values {
		switch {
		case v == exportPublic, v == exportPrivate, v == exportNone:
		case len(validation.IsDNS1123Label(v)) > 0:
			errs = append(errs, fmt.Errorf("%s: %s: %q is not ., *, ~ or a namespace name", object, field, v))
		}
	}
	return errs
}

// splitExportTo splits the annotation's value as istiod does: by commas, each value trimmed.
func splitExportTo(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// candidate is one object's names for a host, with what its visibility is decided by.
type candidate struct {
	key string // "s/ns/name" or "e/ns/name"
	objectMeta
	svcHost string // the host Sidecar egress hosts are matched against (a Service's, for its per-pod names)
	entries []table.Entry
}

// objectMeta is what the visibility of one object's names depends on, kept beside its entries.
// A large cluster has one per Service: its strings are the informer's, shared, and what is made of
// them (object, the Service's host) is made when asked.
type objectMeta struct {
	name, ns string
	kube     bool // a Kubernetes Service (else a ServiceEntry): preferred over ServiceEntries
	created  time.Time
	exportTo []string // as written; nil: the mesh default
	field    string   // where exportTo is written
}

// object names the object for logs and the debug endpoint: "service ns/name", "serviceentry ns/name".
func (m objectMeta) object() string {
	kind := "serviceentry"
	if m.kube {
		kind = "service"
	}
	return kind + " " + m.ns + "/" + m.name
}

func (m objectMeta) equal(o objectMeta) bool {
	return m.name == o.name && m.ns == o.ns && m.kube == o.kube && m.created.Equal(o.created) &&
		slices.Equal(m.exportTo, o.exportTo) && m.field == o.field
}

// visibility is the state visibility is decided by, beyond the objects: the mesh defaults and the
// namespace-wide Sidecars.
type visibility struct {
	defaults meshDefaults
	own      map[string]*sidecarRules // namespace -> its namespace-wide Sidecar (the oldest)
	ownNS    []string                 // the keys of own, sorted
}

func newVisibility(defaults meshDefaults, own map[string]*sidecarRules) visibility {
	v := visibility{defaults: defaults, own: own}
	for ns := range own {
		v.ownNS = append(v.ownNS, ns)
	}
	slices.Sort(v.ownNS)
	return v
}

// sidecarFor is the Sidecar of client namespace ns: its own, else the root namespace's, else nil
// (every host of every namespace).
func (v *visibility) sidecarFor(ns string) *sidecarRules {
	if sc := v.own[ns]; sc != nil {
		return sc
	}
	return v.own[v.defaults.rootNamespace()]
}

// trivial reports whether every namespace sees every candidate alike: no Sidecar, every object
// public, and all of one namespace (else each namespace prefers its own).
func (v *visibility) trivial(cands []candidate, ex []exported) bool {
	if len(v.own) > 0 {
		return false
	}
	for i := range cands {
		if !ex[i].public || cands[i].ns != cands[0].ns {
			return false
		}
	}
	return true
}

// choice is what one client namespace gets for a host: the candidates answering, in order, and why.
type choice struct {
	winners []int
	sidecar *sidecarRules
	// per candidate: exported to the namespace, imported by its Sidecar (and by which egress host)
	exported, imported []bool
	importedBy         []string
}

// choose picks the candidates a client of namespace ns gets, as istiod builds its name table:
// among the candidates exported to ns and imported by its Sidecar, in istiod's order (those exported
// to ns by name first, then the public ones, each oldest first), one namespace is chosen: the
// client's own, else the first, a Kubernetes Service beating a ServiceEntry. Of that namespace's
// candidates a Kubernetes Service answers alone; ServiceEntries answer together.
func (v *visibility) choose(ns string, cands []candidate, ex []exported) choice {
	ch := choice{sidecar: v.sidecarFor(ns), exported: make([]bool, len(cands)), imported: make([]bool, len(cands)),
		importedBy: make([]string, len(cands))}
	var explicit, public []int
	for i := range cands {
		vis, byName := ex[i].visibleTo(ns)
		ch.exported[i] = vis
		if !vis {
			continue
		}
		ok, by := true, "no Sidecar: every host"
		if ch.sidecar != nil {
			ok, by = ch.sidecar.imports(cands[i].ns, cands[i].svcHost, ns)
		}
		ch.imported[i], ch.importedBy[i] = ok, by
		if !ok {
			continue
		}
		if byName {
			explicit = append(explicit, i)
		} else {
			public = append(public, i)
		}
	}
	older := func(a, b int) int {
		if c := cands[a].created.Compare(cands[b].created); c != 0 {
			return c
		}
		return strings.Compare(cands[a].key, cands[b].key)
	}
	slices.SortStableFunc(explicit, older)
	slices.SortStableFunc(public, older)
	order := append(explicit, public...)
	if len(order) == 0 {
		return ch
	}
	chosen, chosenKube := cands[order[0]].ns, cands[order[0]].kube
	for _, i := range order[1:] {
		c := cands[i]
		if c.ns == ns || (!chosenKube && c.kube && chosen != ns) {
			chosen, chosenKube = c.ns, c.kube
		}
	}
	for _, i := range order {
		if cands[i].ns != chosen {
			continue
		}
		if cands[i].kube {
			ch.winners = []int{i}
			break
		}
		if !chosenKube {
			ch.winners = append(ch.winners, i)
		}
	}
	return ch
}

// resolve returns the entries of one host from its candidates with their visibility: one variant per
// distinct answer, each seen by the namespaces that get it (a list), or by every namespace but those
// that get another or nothing. Each namespace sees exactly one variant, or none.
func (v *visibility) resolve(cands []candidate) []table.Entry {
	ex := make([]exported, len(cands))
	for i, c := range cands {
		ex[i] = effectiveExportTo(c.exportTo, c.field, c.ns, &v.defaults)
	}
	if v.trivial(cands, ex) {
		if len(cands) == 1 {
			return cands[0].entries
		}
		var out []table.Entry
		for _, i := range v.choose(otherNamespace, cands, ex).winners {
			out = append(out, cands[i].entries...)
		}
		return out
	}
	named := v.namespaces(cands, ex)
	// A namespace that no candidate is in and no exportTo list names differs from the rest only by
	// its Sidecar: namespaces whose Sidecars say the same get the same, decided once.
	special := map[string]bool{}
	for i, c := range cands {
		special[c.ns] = true
		for _, ns := range ex[i].to {
			special[ns] = true
		}
	}
	bySidecar := map[string][]int{}
	type group struct {
		winners []int
		nss     []string
		other   bool
	}
	var groups []*group
	byWinners := map[string]*group{}
	for _, ns := range append(named, otherNamespace) {
		var winners []int
		if sc := v.own[ns]; sc != nil && !special[ns] {
			w, ok := bySidecar[sc.sig]
			if !ok {
				w = v.choose(ns, cands, ex).winners
				bySidecar[sc.sig] = w
			}
			winners = w
		} else {
			winners = v.choose(ns, cands, ex).winners
		}
		if len(winners) == 0 {
			continue
		}
		k := winnersKey(winners)
		g := byWinners[k]
		if g == nil {
			g = &group{winners: winners}
			byWinners[k] = g
			groups = append(groups, g)
		}
		if ns == otherNamespace {
			g.other = true
		} else {
			g.nss = append(g.nss, ns)
		}
	}
	// The variant most namespaces see comes first: while the table keeps one variant per host, that
	// is the one kept.
	slices.SortStableFunc(groups, func(a, b *group) int {
		if a.other != b.other {
			if a.other {
				return -1
			}
			return 1
		}
		return len(b.nss) - len(a.nss)
	})
	var out []table.Entry
	for _, g := range groups {
		var visibleTo, hiddenFrom []string
		if g.other {
			sees := make(map[string]bool, len(g.nss))
			for _, ns := range g.nss {
				sees[ns] = true
			}
			for _, ns := range named {
				if !sees[ns] {
					hiddenFrom = append(hiddenFrom, ns)
				}
			}
		} else {
			visibleTo = g.nss
		}
		for _, i := range g.winners {
			for _, e := range cands[i].entries {
				e.VisibleTo, e.HiddenFrom = visibleTo, hiddenFrom
				out = append(out, e)
			}
		}
	}
	return out
}

// namespaces lists, sorted, every namespace that may see the host otherwise than the rest: the
// candidates', those of exportTo lists, and those with a Sidecar of their own.
func (v *visibility) namespaces(cands []candidate, ex []exported) []string {
	var few []string
	for i, c := range cands {
		few = append(few, c.ns)
		few = append(few, ex[i].to...)
	}
	slices.Sort(few)
	few = slices.Compact(few)
	out := make([]string, 0, len(few)+len(v.ownNS))
	i, j := 0, 0
	for i < len(few) || j < len(v.ownNS) {
		switch {
		case j == len(v.ownNS) || (i < len(few) && few[i] < v.ownNS[j]):
			out = append(out, few[i])
			i++
		case i == len(few) || v.ownNS[j] < few[i]:
			out = append(out, v.ownNS[j])
			j++
		default:
			out = append(out, few[i])
			i, j = i+1, j+1
		}
	}
	return out
}

func winnersKey(w []int) string {
	b := make([]byte, 0, 4*len(w))
	for _, i := range w {
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, ',')
	}
	return string(b)
}
