package kubernetes

import (
	"iter"
	"slices"
	"strings"
)

// hostIndex records which objects name which canonical hosts, to redo a host from the objects that
// name it. The hosts directly under an object's first host (a headless Service's per-pod names,
// under the Service's) are found through that host rather than filed each: they are most of a
// cluster's hosts, one map entry each otherwise.
type hostIndex struct {
	named   map[string]keyList  // host -> the keys of the objects naming it, but for hosts under their first
	hostsOf map[string][]string // key -> the hosts its entries name: the first, then the others sorted
}

// orderHosts returns the canonical hosts of one object as hostsOf keeps them: hosts[0] first, the
// others sorted and without repeats. hosts is reordered.
func orderHosts(hosts []string) []string {
	if len(hosts) < 2 {
		return hosts
	}
	first, rest := hosts[0], hosts[1:]
	slices.Sort(rest)
	rest = slices.Compact(rest)
	if i, found := slices.BinarySearch(rest, first); found {
		rest = slices.Delete(rest, i, i+1)
	}
	return slices.Clip(hosts[:1+len(rest)])
}

// under reports whether canonical host h is directly under canonical host parent.
func under(h, parent string) bool {
	return len(h) > len(parent) && strings.HasSuffix(h, parent) && h[len(h)-len(parent)-1] == '.' &&
		strings.IndexByte(h[:len(h)-len(parent)-1], '.') < 0
}

// parentHost is the canonical host that h is directly under, "" for the root.
func parentHost(h string) string {
	if i := strings.IndexByte(h, '.'); i >= 0 && i < len(h)-1 {
		return h[i+1:]
	}
	return ""
}

// hosts is the hosts object key names (as orderHosts orders them).
func (x *hostIndex) hosts(key string) []string { return x.hostsOf[key] }

// set records that object key names hosts (orderHosts's order) and no others.
func (x *hostIndex) set(key string, hosts []string) {
	x.remove(key)
	if len(hosts) == 0 {
		return
	}
	if x.named == nil {
		x.named, x.hostsOf = map[string]keyList{}, map[string][]string{}
	}
	x.hostsOf[key] = hosts
	for i, h := range hosts {
		if i == 0 || !under(h, hosts[0]) {
			x.named[h] = x.named[h].with(key)
		}
	}
}

// remove forgets object key.
func (x *hostIndex) remove(key string) {
	hosts := x.hostsOf[key]
	for i, h := range hosts {
		if i > 0 && under(h, hosts[0]) {
			continue
		}
		if l := x.named[h].without(key); l != "" {
			x.named[h] = l
		} else {
			delete(x.named, h)
		}
	}
	delete(x.hostsOf, key)
}

// namesUnder reports whether object key names h, a host directly under its first host.
func (x *hostIndex) namesUnder(key, h string) bool {
	hosts := x.hostsOf[key]
	if len(hosts) < 2 {
		return false
	}
	_, found := slices.BinarySearch(hosts[1:], h)
	return found
}

// keys yields the keys of the objects naming host h, in order.
func (x *hostIndex) keys(h string) iter.Seq[string] {
	return func(yield func(string) bool) {
		parent := parentHost(h)
		named, above := x.named[h], x.named[parent]
		implies := func(k string) bool { return x.hostsOf[k][0] == parent && x.namesUnder(k, h) }
		switch {
		case above == "": // most hosts: nothing names the host above
			for k := range named.all() {
				if !yield(k) {
					return
				}
			}
			return
		case named == "": // a per-pod name: its Service's key
			for k := range above.all() {
				if implies(k) && !yield(k) {
					return
				}
			}
			return
		}
		keys := slices.Collect(named.all())
		n := len(keys)
		for k := range above.all() {
			if implies(k) {
				keys = append(keys, k)
			}
		}
		if len(keys) > n {
			slices.Sort(keys)
			keys = slices.Compact(keys)
		}
		for _, k := range keys {
			if !yield(k) {
				return
			}
		}
	}
}

// all is every host some object names, sorted.
func (x *hostIndex) all() []string {
	out := make([]string, 0, len(x.named))
	for h := range x.named {
		out = append(out, h)
	}
	for _, hosts := range x.hostsOf {
		for _, h := range hosts[1:] {
			if under(h, hosts[0]) {
				out = append(out, h)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
