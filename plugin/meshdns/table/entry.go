// Package table is meshdns's name table: an immutable index over the entries that sources publish,
// built once per update and read without locks by every query.
package table

import (
	"net/netip"
	"slices"
	"strings"
)

// Registry names used by sources. They match the strings istiod puts in NameInfo.registry.
const (
	RegistryKubernetes = "Kubernetes"
	RegistryExternal   = "External"
)

// Entry is one host as a source publishes it. Istio's NameTable.NameInfo maps onto it field for field.
type Entry struct {
	// Host is the fully qualified host, with or without the trailing dot; "*.example.com" is a wildcard.
	Host string
	// Addrs are the addresses answered for Host, IPv4 and IPv6 mixed, in the order the source gave.
	Addrs []netip.Addr
	// Registry is where the host comes from: RegistryKubernetes enables the short forms.
	Registry string
	// ShortName and Namespace give the Kubernetes short forms (name, name.ns, name.ns.svc).
	ShortName string
	Namespace string
	// AltHosts are more names answered with the same addresses.
	AltHosts []string
	// Cluster is the cluster the entry was learned from, when the source knows it.
	Cluster string
	// Alias, when set, makes Host another name for it (a Kubernetes ExternalName Service): every
	// question about Host is answered with a CNAME to Alias, and Addrs are not used.
	Alias string
	// SRV are the service records of Host, which is then a "_port._proto.service" name.
	SRV []SRV
	// TXT are the strings of Host's TXT record.
	TXT []string
	// Authoritative makes the table the authority for the zone Host: a name under it that the table
	// lacks is NXDOMAIN rather than passed to the next plugin (clusterset.local, whose absent names the
	// MCS DNS specification defines).
	Authoritative bool
	// VisibleTo, when not nil, limits Host to the clients of these namespaces (an ambient mesh's
	// Service with visibility NAMESPACE, exportTo); HiddenFrom hides it from the clients of these (a
	// namespace whose Sidecar leaves it out). To a client that may not see it the table lacks the
	// entry (another entry of the host may answer it: Merge), and no PTR names it. An empty, non-nil
	// VisibleTo hides it from everyone.
	VisibleTo  []string
	HiddenFrom []string
}

// Limited reports whether some client may not see e.
func (e *Entry) Limited() bool { return e.VisibleTo != nil || len(e.HiddenFrom) > 0 }

// SeenFrom reports whether a client of namespace ns sees e (namespaces compare case-insensitively).
func (e *Entry) SeenFrom(ns string) bool {
	return (e.VisibleTo == nil || containsFold(e.VisibleTo, ns)) && !containsFold(e.HiddenFrom, ns)
}

// sameVisibility reports whether a and b are seen by the same clients, as listed.
func sameVisibility(a, b *Entry) bool {
	return (a.VisibleTo == nil) == (b.VisibleTo == nil) && slices.Equal(a.VisibleTo, b.VisibleTo) &&
		slices.Equal(a.HiddenFrom, b.HiddenFrom)
}

// Equal reports whether e and o are the same entry, field for field.
func (e *Entry) Equal(o *Entry) bool { return sameData(e, o) && sameVisibility(e, o) }

// sameData reports whether a and b are the same entry but for who sees them: per-namespace copies
// of one host that Merge folds into one entry.
func sameData(a, b *Entry) bool {
	return a.Host == b.Host && slices.Equal(a.Addrs, b.Addrs) && a.Registry == b.Registry &&
		a.ShortName == b.ShortName && a.Namespace == b.Namespace && slices.Equal(a.AltHosts, b.AltHosts) &&
		a.Cluster == b.Cluster && a.Alias == b.Alias && slices.Equal(a.SRV, b.SRV) &&
		slices.Equal(a.TXT, b.TXT) && a.Authoritative == b.Authoritative
}

// allowList reports whether e is seen by the clients of the namespaces it lists and no others.
func (e *Entry) allowList() bool { return e.VisibleTo != nil && len(e.HiddenFrom) == 0 }

// covers reports whether every client that sees b sees e: b then never answers after e.
func (e *Entry) covers(b *Entry) bool {
	if b.VisibleTo == nil {
		// Every namespace but a few sees b: e must be the same, hidden from no more of them.
		return e.VisibleTo == nil && !slices.ContainsFunc(e.HiddenFrom, func(ns string) bool { return !containsFold(b.HiddenFrom, ns) })
	}
	return !slices.ContainsFunc(b.VisibleTo, func(ns string) bool { return b.SeenFrom(ns) && !e.SeenFrom(ns) })
}

// overlaps reports whether some client sees both e and b.
func (e *Entry) overlaps(b *Entry) bool {
	if e.VisibleTo == nil {
		if b.VisibleTo == nil {
			return true // each hides from a few namespaces: countless others see both
		}
		e, b = b, e
	}
	return slices.ContainsFunc(e.VisibleTo, func(ns string) bool { return e.SeenFrom(ns) && b.SeenFrom(ns) })
}

func containsFold(list []string, ns string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(s, ns) })
}

// EntriesEqual reports whether a and b hold equal entries in the same order.
func EntriesEqual(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(&b[i]) {
			return false
		}
	}
	return true
}

// SRV is one service record: a port of Target.
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string
}

// rank orders entries that name the same host: a Kubernetes Service beats a ServiceEntry.
func (e *Entry) rank() uint8 {
	if e.Registry == RegistryKubernetes {
		return 0
	}
	return 1
}
