package table

import "strings"

// shortFilter tells, without a map lookup, whether a key may be a short form of some host: the most
// labels of any short name, and a Bloom filter of the namespaces that have short forms.
type shortFilter struct {
	labels uint8
	ns     [16]uint64 // 1024 bits, one per namespace hash
}

func (f *shortFilter) add(short, ns string) {
	f.labels = uint8(max(int(f.labels), min(strings.Count(short, ".")+1, 255)))
	h := nsHash([]byte(ns))
	f.ns[h/64%16] |= 1 << (h % 64)
}

// may reports whether a short name of labels labels in namespace ns may name a host.
func (f *shortFilter) may(labels int, ns []byte) bool {
	if labels > int(f.labels) {
		return false
	}
	h := nsHash(ns)
	return f.ns[h/64%16]&(1<<(h%64)) != 0
}

// nsHash is FNV-1a: namespaces are short, and a map's hash costs more than the probe it saves.
func nsHash(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}
