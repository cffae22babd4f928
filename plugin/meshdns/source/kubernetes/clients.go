package kubernetes

import (
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// clientIndex maps the address of a pod to its namespace, so that a query's source address tells the
// resolver which namespace's short names and search domains apply. It is rebuilt whole from the pod
// informer after each burst of changes and read without a lock by every query. It also keeps the set
// of namespaces with pods, for the sources that subscribe per namespace (source.ClientNamespaces).
type clientIndex struct {
	byAddr atomic.Pointer[map[netip.Addr]string]

	mu         sync.Mutex
	namespaces []string // sorted
	synced     bool
	changed    chan struct{} // closed, and replaced, when namespaces or synced change
}

// NamespaceOf returns the namespace of the pod with address a.
func (c *clientIndex) NamespaceOf(a netip.Addr) (string, bool) {
	m := c.byAddr.Load()
	if m == nil {
		return "", false
	}
	ns, ok := (*m)[a.Unmap()]
	return ns, ok
}

// ClientNamespaces implements source.ClientNamespaces.
func (c *clientIndex) ClientNamespaces() ([]string, bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.namespaces, c.synced, c.changed
}

// rebuild indexes pods by every address they have as clients (clientPod), both families.
func (c *clientIndex) rebuild(pods []any) int {
	m := make(map[netip.Addr]string, len(pods))
	for _, obj := range pods {
		if p, ok := obj.(*clientPod); ok {
			for _, a := range p.addrs {
				m[a] = p.Namespace
			}
		}
	}
	c.byAddr.Store(&m)
	c.setNamespaces(m)
	return len(m)
}

// setNamespaces records the namespaces of the indexed pods, waking the watchers when they changed
// or on the first sync.
func (c *clientIndex) setNamespaces(byAddr map[netip.Addr]string) {
	set := map[string]bool{}
	for _, ns := range byAddr {
		set[ns] = true
	}
	ns := slices.Sorted(maps.Keys(set))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.synced && slices.Equal(ns, c.namespaces) {
		return
	}
	c.namespaces, c.synced = ns, true
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}
