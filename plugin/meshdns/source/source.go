// Package source defines how the sources of the name table (a file, istiod's NDS, Kubernetes) hand
// their views to the meshdns plugin.
package source

import (
	"context"
	"net/netip"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// Sink receives what one source learns. Calls may come from any goroutine.
type Sink interface {
	// Publish replaces the source's entries with a complete snapshot.
	Publish(entries []table.Entry)
	// Reject reports an update the source could not use; its last published snapshot stays.
	Reject(err error)
}

// Source feeds the name table from one place.
type Source interface {
	// Kind is the metric label of the source: a fixed word such as "file" or "nds".
	Kind() string
	// String names the source in logs, with what sets it apart (a path, an address).
	String() string
	// Run publishes to sink until ctx ends.
	Run(ctx context.Context, sink Sink)
}

// Clients is implemented by sources that know which namespace a client address belongs to (the pods
// of a Kubernetes node), so that each client gets its own namespace's short names.
type Clients interface {
	NamespaceOf(addr netip.Addr) (namespace string, ok bool)
}

// Waited is implemented by sources whose first table the server's start waits for, up to
// StartupTimeout, rather than start answering without it.
type Waited interface {
	StartupTimeout() time.Duration
}

// ChangeSink is a Sink that also takes changes to some hosts, so that a source whose objects change
// one at a time (Kubernetes) need not send everything again. A source publishes a first snapshot,
// then changes.
type ChangeSink interface {
	Sink
	// Change replaces the source's entries for each host given (canonical or not); an empty list
	// means the source no longer has the host.
	Change(hosts map[string][]table.Entry)
}

// Recomputer is implemented by sources whose entries are a function of state they keep anyway (the
// Kubernetes source's informer caches). The store then keeps no copy of what they publish, the
// largest part of its memory otherwise, and asks again when it needs a host's entries (another
// source changed the host) or all of them (a whole build). What they give may be newer than what
// they last published: the change that makes it so follows. The store calls them while it holds
// its lock, so a source must not hold a lock of its own across Publish or Change that these take.
type Recomputer interface {
	// HostEntries returns the source's entries for a canonical host, none when it has none.
	HostEntries(host string) []table.Entry
	// Entries returns every entry of the source.
	Entries() []table.Entry
}

// ClientNamespaces is implemented by sources that know which namespaces their clients are in (the
// pods of a Kubernetes node), so that a source whose control plane shapes its view by the asking
// namespace (NDS) can subscribe once for each of them.
type ClientNamespaces interface {
	// ClientNamespaces returns the namespaces with clients now, sorted; whether the source has learned
	// them (false until its first sync); and a channel closed at the next change of either.
	ClientNamespaces() (namespaces []string, synced bool, changed <-chan struct{})
}

// Tokens is implemented by sources that can have a token made for a namespace's ServiceAccount (a
// Kubernetes TokenRequest), for a source that authenticates to its control plane as several
// namespaces (nds per namespace on istiod's TLS port).
type Tokens interface {
	Token(ctx context.Context, namespace, serviceAccount, audience string) (token string, expires time.Time, err error)
}
