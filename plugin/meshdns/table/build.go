package table

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/pace"
)

// Options are the settings a table is built with.
type Options struct {
	// ClusterDomain is the Kubernetes cluster domain; short forms exist only for hosts under it.
	ClusterDomain string
	// TTL is the TTL of every answer, and the SOA minimum of negative answers.
	TTL uint32
}

// Table is an immutable index of every name form of every entry. Lookups take no lock.
type Table struct {
	all   []name           // every variant of every host, in Build's merged order
	names map[string]claim // canonical hosts and alt hosts; short forms are found through their host
	wild  map[string]*name // "example.com." for the host "*.example.com."
	// rev4 and rev6 map an address to the one host whose PTR it is (an index into all) or, as ^i, to
	// revLists[i], the hosts of an address several share, sorted.
	rev4     map[[4]byte]int32
	rev6     map[[16]byte]int32
	revLists [][]string
	cd       string // the cluster domain as ".cluster.local."
	// shortForms summarises the hosts that have short forms, so that a key that cannot be one skips
	// looking its host up: most misses.
	shortForms shortFilter
	// zones are the hosts of Authoritative entries; ents counts, for each name under a zone that is
	// a proper ancestor of hosts, those hosts (an empty non-terminal: NODATA, not NXDOMAIN).
	zones   map[string]string // zone -> itself, so that lookups return it without allocating
	ents    map[string]int32
	ttl     uint32
	serial  uint32
	entries int
	opt     Options

	// rivals lists, for each host that shares a key (an alt host) with other hosts, the entries of
	// those hosts: when the host changes, Update rebuilds them with it (update.go).
	rivals map[string][]Entry
	// over and current make a table built by Update: the hosts in current are answered from over,
	// whatever this table's own indexes say about them.
	over    *Table
	current map[string][]Entry // every host changed since the base was built: its entries, none if gone
	baseLen int                // hosts of the base
	// entDelta corrects the base's ents for the hosts added and removed since it was built.
	entDelta map[string]int32
}

// name is one variant of a host with its answers prepared. It is kept small (64 bytes): a large
// mesh has a million of them, and what only a few names have hangs off more.
type name struct {
	host  string // canonical lower-case FQDN; "*.example.com." for wildcards
	zone  *zone  // owner of the SOA in negative answers about this host
	wire  []byte // the A records, then the AAAA records, prepacked for replies written without a dns.Msg
	next  atomic.Uint32
	nA    uint16 // how many of wire's records are A records
	short bool   // a Kubernetes host in the cluster domain: its short forms name it (shortForms)
	more  *nameMore
}

// nameMore is what few names have: an alias, SRV and TXT records, a limited visibility, variants.
type nameMore struct {
	alias string // CNAME target, canonical; when set the name has no addresses
	srv   []SRV  // targets canonical
	txt   []string
	vis   *visibility // who may see the name; nil: every client
	// chain links the variants of a host that different clients see differently (Merge), nil for a
	// host with one: a lookup answers with the first variant that claims the key and that the client sees.
	chain *variantLink
}

// none is the nameMore of a name without any of it.
var none nameMore

// extra returns what n has of nameMore.
func (n *name) extra() *nameMore {
	if n.more == nil {
		return &none
	}
	return n.more
}

// zone is an apex whose SOA negative answers carry, prepacked.
type zone struct {
	name string
	soa  []byte // nil when the zone does not pack: the dns.Msg path then reports it
}

// variantLink is a variant's place in its host's chain, and the alt hosts it claims: variants may
// differ in them, and a key only reaches the variants that claim it.
type variantLink struct {
	next *name
	alts []string // canonical
}

// claim is a name as one key reaches it, ranked so that the hosts competing for a key resolve the
// same way every time. The index keeps the claims themselves rather than copy out the names.
type claim struct {
	n        *name // the host's first variant: a lookup goes down the chain to the one that answers
	idx      int32 // the entry's position in Build's merged list
	strength uint8 // 0 canonical, 1 alt host
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
// merged first by Merge's rules; the variants that come out are chained (nameMore.chain), and the
// claims on every key of a host name its first variant, from which a lookup goes down the chain.
func Build(entries []Entry, opt Options) *Table {
	return build(entries, opt, nil)
}

// build is Build with the authoritative zones of a base table (for an overlay, whose changed hosts
// are answered with their zone's SOA though the zone's own entry is not among them).
func build(entries []Entry, opt Options, zones map[string]string) *Table {
	// Most tables name each host once: index them as they are, and merge only when a host repeats,
	// rather than copy every entry through Merge first.
	if t, ok := index(entries, opt, zones, false); ok {
		return t
	}
	t, _ := index(Merge(entries), opt, zones, true)
	return t
}

// index builds the table of entries. Unless merged (Merge's output, a host's variants adjacent), it
// gives up, returning false, at the first host that repeats.
func index(entries []Entry, opt Options, zones map[string]string, merged bool) (*Table, bool) {
	cd := "." + strings.Trim(strings.ToLower(opt.ClusterDomain), ".") + "."
	keys, nwire, n4, n6 := 0, 0, 0, 0
	for i := range entries {
		keys += 1 + len(entries[i].AltHosts)
		for _, a := range entries[i].Addrs {
			if a = a.Unmap(); a.Is4() {
				nwire += wireA
				n4++
			} else {
				nwire += wireAAAA
				n6++
			}
		}
	}
	t := &Table{
		names:  make(map[string]claim, keys),
		wild:   make(map[string]*name),
		rev4:   make(map[[4]byte]int32, n4),
		rev6:   make(map[[16]byte]int32, n6),
		cd:     cd,
		ttl:    opt.TTL,
		serial: uint32(time.Now().Unix()),
		opt:    opt,
	}
	var collisions [][2]int32 // pairs of entries of different hosts claiming the same key
	repeated := false         // a host met again outside its run of variants: the entries need Merge
	put := func(key string, c claim) {
		old, ok := t.names[key]
		if ok && old.n == c.n {
			// Another variant of the host: the host claims key as strongly as its strongest variant.
			if c.strength < old.strength || c.strength == old.strength && c.rank < old.rank {
				t.names[key] = c
			}
			return
		}
		if ok && c.strength == 0 && old.strength == 0 {
			repeated = true // two entries of one host, not adjacent variants
			return
		}
		if ok {
			collisions = append(collisions, [2]int32{old.idx, c.idx})
		}
		if !ok || c.beats(old) {
			t.names[key] = c
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
	// One allocation for every name and one for every prepacked record, rather than one per name and
	// address.
	names := make([]name, len(entries))
	t.all = names
	wire := make([]byte, 0, nwire)
	apexes := make(map[string]*zone)
	var head *name // the first variant of the host being indexed, which its claims name
	// A resolver pinned to one core shares it between this build and the queries: let them in every
	// half millisecond rather than hold them for the whole build (runtime.Gosched does not: pace).
	var pacer pace.Pacer
	for i := range entries {
		pacer.Tick()
		e := &entries[i]
		host := canonicalHost(e.Host)
		n := &names[i]
		n.host = host
		variant := merged && i > 0 && names[i-1].host == host // Merge puts a host's variants together
		if variant {
			prev := names[i-1].ensureMore()
			if prev.chain == nil {
				prev.chain = newVariantLink(&entries[i-1])
			}
			n.ensureMore().chain = newVariantLink(e)
			prev.chain.next = n
		} else {
			head = n
			t.entries++
		}
		apex := zoneOf(host, cd)
		if z := t.zoneAbove(host); z != "" {
			apex = z
			if !variant {
				t.countAncestors(host, z, t.ents, 1) // empty non-terminals count hosts
			}
		}
		if n.zone = apexes[apex]; n.zone == nil {
			n.zone = &zone{name: apex, soa: t.packSOA(apex)}
			apexes[apex] = n.zone
		}
		if len(e.SRV) > 0 {
			m := n.ensureMore()
			for _, r := range e.SRV {
				r.Target = canonicalHost(r.Target)
				m.srv = append(m.srv, r)
			}
		}
		if len(e.TXT) > 0 {
			n.ensureMore().txt = e.TXT
		}
		if vis := newVisibility(e); vis != nil {
			n.ensureMore().vis = vis
		}
		addrs := e.Addrs
		if e.Alias != "" {
			n.ensureMore().alias, addrs = canonicalHost(e.Alias), nil // an alias has no addresses of its own
		}
		wire = t.packRecords(n, addrs, wire)
		if short, ns, ok := shortForms(e, host, cd); ok {
			n.short = true
			t.shortForms.add(short, ns)
		}
		if base, ok := strings.CutPrefix(host, "*."); ok {
			if old, ok := t.wild[base]; !ok || host < old.host {
				t.wild[base] = n
			} else if old.host == host && !variant {
				return nil, false // two entries of one host, not adjacent variants
			}
			continue
		}
		c := claim{n: head, idx: int32(i), rank: e.rank()}
		put(host, c)
		c.strength = 1
		for _, alt := range e.AltHosts {
			put(canonicalHost(alt), c)
		}
		if repeated {
			return nil, false
		}
		if n.seenByAll() {
			// A PTR would show a limited variant's name and address to every client: only these have them.
			for _, a := range addrs {
				t.addReverse(a.Unmap(), int32(i))
			}
		}
	}
	t.finishReverse()
	t.baseLen = t.entries
	for _, pair := range collisions {
		a, b := pair[0], pair[1]
		t.addRival(names[a].host, names, entries, b)
		t.addRival(names[b].host, names, entries, a)
	}
	return t, true
}

// ensureMore returns n's nameMore, giving it one.
func (n *name) ensureMore() *nameMore {
	if n.more == nil {
		n.more = &nameMore{}
	}
	return n.more
}

// newVariantLink is the link of variant e, with the alt hosts it claims besides its host.
func newVariantLink(e *Entry) *variantLink {
	l := &variantLink{}
	for _, alt := range e.AltHosts {
		l.alts = append(l.alts, canonicalHost(alt))
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
