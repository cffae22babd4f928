package meshdns

import (
	"net"
	"net/netip"
	"sync"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

// views holds the view of each client namespace seen, made once: a node-local resolver answers pods
// of many namespaces, each with its own bare names and search domains.
type views struct {
	search        []string // the configured search domains, or nil for each namespace's defaults
	clusterDomain string
	byNS          sync.Map // namespace -> *table.View
}

func newViews(search []string, clusterDomain string) *views {
	return &views{search: search, clusterDomain: clusterDomain}
}

func (v *views) of(namespace string) *table.View {
	if got, ok := v.byNS.Load(namespace); ok {
		return got.(*table.View)
	}
	got, _ := v.byNS.LoadOrStore(namespace, table.NewView(namespace, v.search, v.clusterDomain))
	return got.(*table.View)
}

// viewOf is the view of the client that sent the query w answers: its pod's namespace when a source
// knows its address, else the configured namespace.
func (m *MeshDNS) viewOf(w dns.ResponseWriter) *table.View {
	if len(m.clients) == 0 {
		return m.view
	}
	addr, ok := remoteAddr(w)
	if !ok {
		return m.view
	}
	return m.viewFor(addr)
}

// viewFor is the view of the client at addr.
func (m *MeshDNS) viewFor(addr netip.Addr) *table.View {
	for _, c := range m.clients {
		if ns, ok := c.NamespaceOf(addr); ok {
			return m.views.of(ns)
		}
	}
	return m.view
}

// remoteAddr is the client's IP address, without allocating.
func remoteAddr(w dns.ResponseWriter) (netip.Addr, bool) {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
