package kubernetes

import (
	"encoding/binary"
	"hash/maphash"
	"strings"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/client-go/tools/cache"
)

// The source keeps no copy of its entries between flushes: the store holds the published ones, and
// an object's are a function of what the informers hold, computed again when a host it names is
// redone. Between flushes it keeps, per object, the hosts it names and a checksum of its entries.

// objectNames computes the entries of object key ("s/ns/name" a Service, "e/ns/name" a
// ServiceEntry, "i/ns/name" a ServiceImport, "z/zone" a clusterset zone) from what the informers hold
// now, with what their visibility depends on (hasMeta false for ServiceImports and zones, whose
// names everyone sees) and what is wrong in the object. A gone object has no entries.
func (s *Source) objectNames(key string) (entries []table.Entry, m objectMeta, hasMeta bool, errs []error) {
	kind, rest, _ := strings.Cut(key, "/")
	if kind == "z" {
		return zoneEntries(rest), m, false, nil
	}
	if s.informersOf == nil {
		return nil, m, false, nil // not running: nothing to compute from (tests)
	}
	ns, _, _ := strings.Cut(rest, "/")
	w := s.informersOf(ns)
	switch kind {
	case "s":
		obj, _, _ := w.services.GetIndexer().GetByKey(rest)
		svc, ok := obj.(*kubewatch.Service)
		if !ok {
			return nil, m, false, nil
		}
		var eps []*kubewatch.EndpointSlice
		if svc.Headless() {
			eps = slicesOf(w.slices, kubewatch.ServiceIndex, rest)
		}
		entries, err := serviceEntries(svc, eps, s.clusterDomain, s.cfg.Cluster)
		if err != nil {
			errs = []error{err}
		}
		return entries, serviceMeta(svc), true, errs
	case "e":
		if w.serviceEntries == nil {
			return nil, m, false, nil
		}
		obj, _, _ := w.serviceEntries.GetIndexer().GetByKey(rest)
		se, ok := obj.(*serviceEntry)
		if !ok {
			return nil, m, false, nil
		}
		entries, errs := serviceEntryEntries(se, s.cfg.Cluster)
		return entries, serviceEntryMeta(se), true, errs
	case "i":
		if w.imports == nil {
			return nil, m, false, nil
		}
		obj, _, _ := w.imports.GetIndexer().GetByKey(rest)
		si, ok := obj.(*serviceImport)
		if !ok {
			return nil, m, false, nil
		}
		var eps []*kubewatch.EndpointSlice
		if si.Headless {
			eps = slicesOf(w.slices, importIndex, rest)
		}
		entries, errs := serviceImportEntries(si, eps, s.cfg.ClustersetZone, s.cfg.Cluster)
		return entries, m, false, errs
	}
	return nil, m, false, nil
}

// slicesOf lists the EndpointSlices the informer indexes under key in index.
func slicesOf(inf cache.SharedIndexInformer, index, key string) []*kubewatch.EndpointSlice {
	objs, _ := inf.GetIndexer().ByIndex(index, key)
	out := make([]*kubewatch.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if es, ok := o.(*kubewatch.EndpointSlice); ok {
			out = append(out, es)
		}
	}
	return out
}

// redo computes object key's entries again, says what is wrong in it (resource names its kind in the
// metric), and records them.
func (s *Source) redo(key, resource string) {
	entries, m, hasMeta, errs := s.objectNames(key)
	for _, err := range errs {
		invalidTotal.WithLabelValues(s.cfg.Cluster, resource).Inc()
		if resource == "serviceimports" {
			log.Warningf("%s: %v", s, err) // the rest of the import is still served
		} else {
			log.Warningf("%s: %v; left out", s, err)
		}
	}
	if hasMeta && len(entries) > 0 {
		s.setMeta(key, s.checked(key, m))
	}
	s.set(key, entries)
}

// entriesOf is object key's entries: those set in this flush, or computed from the informers (and,
// in a flush, kept until its end, for the object's other hosts).
func (s *Source) entriesOf(key string) []table.Entry {
	if es, ok := s.recent[key]; ok {
		return es
	}
	es, _, _, _ := s.objectNames(key)
	if s.flushing {
		if s.recent == nil {
			s.recent = map[string][]table.Entry{}
		}
		s.recent[key] = es
	}
	return es
}

// sumSeed keys the entry checksums; they never leave the process.
var sumSeed = maphash.MakeSeed()

// entriesSum is a checksum of every field of entries that the source sets, to tell whether an object
// names what it named without keeping what it named.
func entriesSum(entries []table.Entry) uint64 {
	var h maphash.Hash
	h.SetSeed(sumSeed)
	var n [8]byte
	num := func(v int) {
		binary.LittleEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	str := func(v string) {
		num(len(v))
		h.WriteString(v)
	}
	strs := func(vs []string) {
		if vs == nil {
			num(-1) // VisibleTo: nil (everyone) is not empty (no one)
		}
		num(len(vs))
		for _, v := range vs {
			str(v)
		}
	}
	num(len(entries))
	for i := range entries {
		e := &entries[i]
		str(e.Host)
		num(len(e.Addrs))
		for _, a := range e.Addrs {
			b := a.As16()
			h.Write(b[:])
			num(a.BitLen())
			str(a.Zone())
		}
		str(e.Registry)
		str(e.ShortName)
		str(e.Namespace)
		strs(e.AltHosts)
		str(e.Cluster)
		str(e.Alias)
		num(len(e.SRV))
		for _, r := range e.SRV {
			num(int(r.Priority)<<32 | int(r.Weight)<<16 | int(r.Port))
			str(r.Target)
		}
		strs(e.TXT)
		if e.Authoritative {
			num(1)
		} else {
			num(0)
		}
		strs(e.VisibleTo)
		strs(e.HiddenFrom)
	}
	return h.Sum64()
}
