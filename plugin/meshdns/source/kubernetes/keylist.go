package kubernetes

import (
	"iter"
	"slices"
	"strings"
)

// keyList is the keys of the objects naming one host, sorted and joined by a newline, which no key
// holds (object names, zones). A host named by one object, nearly every host, then costs the string
// header of that key and no more: a cluster's hosts are counted in tens of thousands.
type keyList string

// all yields the keys in order.
func (l keyList) all() iter.Seq[string] {
	return func(yield func(string) bool) {
		if l == "" {
			return
		}
		for k := range strings.SplitSeq(string(l), "\n") {
			if !yield(k) {
				return
			}
		}
	}
}

// with returns l with k, in its place.
func (l keyList) with(k string) keyList {
	if l == "" {
		return keyList(k)
	}
	keys := slices.Collect(l.all())
	i, found := slices.BinarySearch(keys, k)
	if found {
		return l
	}
	return keyList(strings.Join(slices.Insert(keys, i, k), "\n"))
}

// without returns l without k.
func (l keyList) without(k string) keyList {
	if string(l) == k {
		return ""
	}
	keys := slices.Collect(l.all())
	i, found := slices.BinarySearch(keys, k)
	if !found {
		return l
	}
	return keyList(strings.Join(slices.Delete(keys, i, i+1), "\n"))
}
