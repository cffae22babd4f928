package table

import (
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// yieldEvery is how many entries Build indexes between yields to the scheduler.
const yieldEvery = 256

// Options are the settings a table is built with.
type Options struct {
	// ClusterDomain is the Kubernetes cluster domain; short forms exist only for hosts under it.
	ClusterDomain string
	// TTL is the TTL of every answer, and the SOA minimum of negative answers.
	TTL uint32
}

// Table is an immutable index of every name form of every entry. Lookups take no lock.
type Table struct {
	names   map[string]claim            // canonical hosts, alt hosts, name.ns., name.ns.svc.
	bare    map[string]map[string]claim // namespace -> "name." -> name
	wild    map[string]*name            // "example.com." for the host "*.example.com."
	reverse map[netip.Addr][]string     // address -> canonical hosts, sorted
	// zones are the hosts of Authoritative entries; ents counts, for each name under a zone that is
	// a proper ancestor of hosts, those hosts (an empty non-terminal: NODATA, not NXDOMAIN).
	zones   map[string]string // zone -> itself, so that lookups return it without allocating
	ents    map[string]int32
	ttl     uint32
	serial  uint32
	entries int
	opt     Options

	// rivals lists, for each host that shares a key (a short form, an alt host) with other hosts, the
	// entries of those hosts: when the host changes, Update rebuilds them with it (update.go).
	rivals map[string][]Entry
	// over and current make a table built by Update: the hosts in current are answered from over,
	// whatever this table's own indexes say about them.
	over    *Table
	current map[string][]Entry // every host changed since the base was built: its entries, none if gone
	baseLen int                // hosts of the base
	// entDelta corrects the base's ents for the hosts added and removed since it was built.
	entDelta map[string]int32
	// unpruned holds the lists of reverse that pruneAncestors shortened, whole: when an overlay
	// changes the subdomain that pruned a host, the host is back.
	unpruned map[netip.Addr][]string
}

// name is one host with its answers prepared: the addresses as the byte slices DNS records carry.
type name struct {
	host  string // canonical lower-case FQDN; "*.example.com." for wildcards
	zone  string // owner of the SOA in negative answers about this host
	alias string // CNAME target, canonical; when set the name has no addresses
	v4    []net.IP
	v6    []net.IP
	// wire4 and wire6 are the same records prepacked, for replies written without a dns.Msg.
	wire4 []byte
	wire6 []byte
	soa   []byte // the prepacked SOA of zone, shared by every name in it
	srv   []SRV  // targets canonical
	txt   []string
	vis   *visibility   // who may see the name; nil: every client
	next  atomic.Uint32 // rotates multi-address answers
	// chain links the variants of a host that different clients see differently (Merge), nil for a
	// host with one: a lookup answers with the first variant that claims the key and that the client sees.
	chain *variantLink
}

// variantLink is a variant's place in its host's chain, and the keys it claims: variants may differ in
// alt hosts and short forms, and a key only reaches the variants that claim it.
type variantLink struct {
	next *name
	keys []string // alt hosts and short forms, in names
	bare string   // the bare short name, in bare[namespace], or ""
}

// claim is a name as one key reaches it, ranked so that the hosts competing for a key resolve the
// same way every time. The index keeps the claims themselves rather than copy out the names.
type claim struct {
	n        *name // the host's first variant: a lookup goes down the chain to the one that answers
	idx      int32 // the entry's position in Build's merged list
	strength uint8 // 0 canonical, 1 alt host, 2 short form
	rank     uint8 // Entry.rank
}

func (c claim) beats(o claim) bool {
	if c.strength != o.strength {
		return c.strength < o.strength
	}
	if c.rank != o.rank {
		return c.rank < o.rank
	}
	return c.n.host < o.n.host
}

// Build indexes entries, which must have valid hosts (ValidateHost). Entries naming the same host are
// merged first by Merge's rules; the variants that come out are chained (name.chain), and the claims
// on every key of a host name its first variant, from which a lookup goes down the chain.
func Build(entries []Entry, opt Options) *Table {
	return build(entries, opt, nil)
}

// build is Build with the authoritative zones of a base table (for an overlay, whose changed hosts
// are answered with their zone's SOA though the zone's own entry is not among them).
func build(entries []Entry, opt Options, zones map[string]string) *Table {
	entries = Merge(entries)
	cd := "." + strings.Trim(strings.ToLower(opt.ClusterDomain), ".") + "."
	t := &Table{
		names:   make(map[string]claim, len(entries)*3),
		bare:    make(map[string]map[string]claim),
		wild:    make(map[string]*name),
		reverse: make(map[netip.Addr][]string),
		ttl:     opt.TTL,
		serial:  uint32(time.Now().Unix()),
		opt:     opt,
	}
	var collisions [][2]int32 // pairs of entries of different hosts claiming the same key
	put := func(m map[string]claim, key string, c claim) {
		old, ok := m[key]
		if ok && old.n == c.n {
			// Another variant of the host: the host claims key as strongly as its strongest variant.
			if c.strength < old.strength || c.strength == old.strength && c.rank < old.rank {
				m[key] = c
			}
			return
		}
		if ok {
			collisions = append(collisions, [2]int32{old.idx, c.idx})
		}
		if !ok || c.beats(old) {
			m[key] = c
		}
	}

	// One allocation each for every name and every address byte, rather than one per name and address.
	names := make([]name, len(entries))
	nbytes, nwire := 0, 0
	for i := range entries {
		for _, a := range entries[i].Addrs {
			nbytes += a.Unmap().BitLen() / 8
			nwire += wireA - 4 + a.Unmap().BitLen()/8
		}
	}
	for z := range zones {
		if t.zones == nil {
			t.zones, t.ents = make(map[string]string), make(map[string]int32)
		}
		t.zones[z] = z
	}
	for i := range entries {
		if entries[i].Authoritative {
			if t.zones == nil {
				t.zones, t.ents = make(map[string]string), make(map[string]int32)
			}
			z := canonicalHost(entries[i].Host)
			t.zones[z] = z
		}
	}
	ipBytes := make([]byte, 0, nbytes)
	wire := make([]byte, 0, nwire)
	soas := make(map[string][]byte)
	var head *name // the first variant of the host being indexed, which its claims name
	for i := range entries {
		if i%yieldEvery == yieldEvery-1 {
			// A resolver pinned to one core shares it between this build and the queries: let them in
			// every few hundred entries rather than hold them for a whole 10 ms scheduler slice.
			runtime.Gosched()
		}
		e := &entries[i]
		host := canonicalHost(e.Host)
		n := &names[i]
		n.host, n.zone = host, zoneOf(host, cd)
		variant := i > 0 && names[i-1].host == host // Merge puts a host's variants together
		if variant {
			if head.chain == nil {
				head.chain = newVariantLink(&entries[i-1], host, cd)
			}
			n.chain = newVariantLink(e, host, cd)
			names[i-1].chain.next = n
		} else {
			head = n
			t.entries++
		}
		if z := t.zoneAbove(host); z != "" {
			n.zone = z
			if !variant {
				t.countAncestors(host, z, t.ents, 1) // empty non-terminals count hosts
			}
		}
		for _, r := range e.SRV {
			r.Target = canonicalHost(r.Target)
			n.srv = append(n.srv, r)
		}
		n.txt = e.TXT
		n.vis = newVisibility(e)
		addrs := e.Addrs
		if e.Alias != "" {
			n.alias, addrs = canonicalHost(e.Alias), nil // an alias has no addresses of its own
		}
		for _, a := range addrs {
			a = a.Unmap()
			start := len(ipBytes)
			if a.Is4() {
				b := a.As4()
				ipBytes = append(ipBytes, b[:]...)
				n.v4 = append(n.v4, net.IP(ipBytes[start:len(ipBytes):len(ipBytes)]))
			} else {
				b := a.As16()
				ipBytes = append(ipBytes, b[:]...)
				n.v6 = append(n.v6, net.IP(ipBytes[start:len(ipBytes):len(ipBytes)]))
			}
		}
		wire = t.packRecords(n, wire)
		if n.soa = soas[n.zone]; n.soa == nil {
			n.soa = t.packSOA(n.zone)
			soas[n.zone] = n.soa
		}
		if base, ok := strings.CutPrefix(host, "*."); ok {
			if old, ok := t.wild[base]; !ok || host < old.host {
				t.wild[base] = n
			}
			continue
		}
		c := claim{n: head, idx: int32(i), rank: e.rank()}
		put(t.names, host, c)
		c.strength = 1
		for _, alt := range e.AltHosts {
			put(t.names, canonicalHost(alt), c)
		}
		if short, ns, ok := shortForms(e, host, cd); ok {
			// Every short form is a prefix of the host: "name.", "name.ns.", "name.ns.svc.".
			c.strength = 2
			put(t.names, host[:len(short)+len(ns)+2], c)
			put(t.names, host[:len(short)+len(ns)+6], c)
			if t.bare[ns] == nil {
				t.bare[ns] = make(map[string]claim)
			}
			put(t.bare[ns], host[:len(short)+1], c)
		}
		for _, a := range addrs {
			if n.vis != nil {
				break // a PTR would show a limited variant's name and address to every client
			}
			a = a.Unmap()
			if !slices.Contains(t.reverse[a], host) {
				t.reverse[a] = append(t.reverse[a], host)
			}
		}
	}
	for a, hosts := range t.reverse {
		slices.Sort(hosts)
		if len(hosts) > 1 {
			if t.reverse[a] = pruneAncestors(hosts); len(t.reverse[a]) < len(hosts) {
				if t.unpruned == nil {
					t.unpruned = make(map[netip.Addr][]string)
				}
				t.unpruned[a] = hosts
			}
		}
	}
	t.baseLen = t.entries
	for _, pair := range collisions {
		a, b := pair[0], pair[1]
		t.addRival(names[a].host, names, entries, b)
		t.addRival(names[b].host, names, entries, a)
	}
	return t
}

// newVariantLink is the link of variant e of canonical host, with the keys it claims besides host.
func newVariantLink(e *Entry, host, clusterDomain string) *variantLink {
	l := &variantLink{}
	for _, alt := range e.AltHosts {
		l.keys = append(l.keys, canonicalHost(alt))
	}
	if short, ns, ok := shortForms(e, host, clusterDomain); ok {
		l.keys = append(l.keys, host[:len(short)+len(ns)+2], host[:len(short)+len(ns)+6])
		l.bare = host[:len(short)+1]
	}
	return l
}

// addRival records the entries of the host of entries[i], every variant of it, as rivals of host.
func (t *Table) addRival(host string, names []name, entries []Entry, i int32) {
	if t.rivals == nil {
		t.rivals = make(map[string][]Entry)
	}
	h := names[i].host
	for _, r := range t.rivals[host] {
		if canonicalHost(r.Host) == h {
			return
		}
	}
	from, to := i, i+1
	for from > 0 && names[from-1].host == h {
		from--
	}
	for int(to) < len(names) && names[to].host == h {
		to++
	}
	t.rivals[host] = append(t.rivals[host], entries[from:to]...)
}

// shortForms returns the Kubernetes short name and namespace of a host in the cluster domain
// (name.ns.svc.DOMAIN), read off the host; an entry that gives others has none. A per-pod name
// (pod.svc.ns.svc.DOMAIN) has the short name "pod.svc".
func shortForms(e *Entry, host, clusterDomain string) (short, ns string, ok bool) {
	if e.Registry != RegistryKubernetes {
		return "", "", false
	}
	rest, ok := strings.CutSuffix(host, ".svc"+clusterDomain)
	if !ok {
		return "", "", false
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot <= 0 {
		return "", "", false
	}
	short, ns = rest[:dot], rest[dot+1:] // substrings of host: no allocation
	// The source's own short name and namespace must agree with the host, or there are no short forms.
	if e.ShortName != "" && !strings.EqualFold(e.ShortName, short) || e.Namespace != "" && !strings.EqualFold(e.Namespace, ns) {
		return "", "", false
	}
	return short, ns, true
}

// zoneAbove returns the authoritative zone that holds host (host itself included), or "".
func (t *Table) zoneAbove(host string) string {
	if len(t.zones) == 0 {
		return ""
	}
	for name := host; ; {
		if _, ok := t.zones[name]; ok {
			return name
		}
		dot := strings.IndexByte(name, '.')
		if dot < 0 || dot == len(name)-1 {
			return ""
		}
		name = name[dot+1:]
	}
}

// countAncestors adds d to the count of every proper ancestor of host down to zone.
func (t *Table) countAncestors(host, zone string, counts map[string]int32, d int32) {
	for name := host; name != zone; {
		dot := strings.IndexByte(name, '.')
		if dot < 0 || dot == len(name)-1 {
			return
		}
		name = name[dot+1:]
		counts[name] += d
	}
}

// zoneOf is the apex we claim for negative answers about host: the cluster domain for hosts in it,
// the host itself (without a wildcard label) for the rest.
func zoneOf(host, clusterDomain string) string {
	if strings.HasSuffix(host, clusterDomain) {
		return clusterDomain[1:]
	}
	if base, ok := strings.CutPrefix(host, "*."); ok {
		return base
	}
	return host
}

// Len returns the number of hosts in the table (a host with variants counts once).
func (t *Table) Len() int { return t.entries }

// TTL returns the TTL the table answers with.
func (t *Table) TTL() uint32 { return t.ttl }
