// Package kubernetes is the name-table source that watches Kubernetes itself: Services,
// EndpointSlices and, optionally, Istio ServiceEntries, building the table istiod would build from the
// same objects, and the pods of a node, to tell which namespace a client's address belongs to.
package kubernetes

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

var log = clog.NewWithPlugin("meshdns")

const (
	// coalesce is the shortest time between two rebuilds of the table: a burst of changes (a
	// rollout, a namespace deleted) becomes one rebuild per interval, while a lone change is applied
	// at once.
	coalesce = 50 * time.Millisecond
	// probeEvery is how often the API server is checked, for the connected metric and the log.
	probeEvery = 5 * time.Second
	// importIndex indexes EndpointSlices by the "ns/name" of their ServiceImport (MCS), as
	// kubewatch.ServiceIndex does by that of their Service.
	importIndex = "import"
)

// Source watches one Kubernetes cluster.
type Source struct {
	cfg     *Config
	rest    *rest.Config
	clients *clientIndex // nil unless cfg.Clients
	tokens  tokenClient

	mu       sync.Mutex
	dirty    dirty        // what changed since the last flush
	mesh     meshDefaults // the last good mesh config
	meshData []byte       // its content
	meshRead bool         // the mesh ConfigMap's first state is in
	// debug are the handlers other sources of this cluster serve on our debug endpoint, by path
	// (multicluster's /multicluster); set at setup, before Run.
	debug map[string]http.Handler
	kick  chan struct{}

	// view guards what the debug endpoint reads: written by the Run goroutine in flush.
	view sync.RWMutex
	vis  visibility
	meta map[string]objectMeta // "s/ns/name" or "e/ns/name" -> what its names' visibility depends on

	// Owned by the Run goroutine (and read by the debug endpoint under view). Objects are known by
	// key: "s/ns/name", "e/ns/name", "i/ns/name" or "z/zone" (objectnames.go).
	informersOf   func(ns string) *nsInformers // nil until Run has them
	clusterDomain string                       // lower case, no dots around
	sums          map[string]uint64            // key -> entriesSum of its entries
	recent        map[string][]table.Entry     // key -> its entries, set or computed in this flush
	flushing      bool
	hosts         hostIndex       // which objects name which canonical hosts
	published     bool            // the first snapshot is out: send changes from now on
	changed       map[string]bool // canonical hosts whose entries changed in this flush
	cands         []candidate     // entriesFor's, reused from host to host
	firstTable    flushTimes      // where the first flush's time went, for the log
}

// flushTimes splits a flush: the changed objects' entries redone, the snapshot of every host, the
// sink's table built from it.
type flushTimes struct{ redo, snapshot, publish time.Duration }

func (t flushTimes) String() string {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("redo %v, snapshot %v, publish %v", ms(t.redo), ms(t.snapshot), ms(t.publish))
}

// New checks the configuration (the kubeconfig must load, or the process must be in a cluster) and
// returns the source, not yet connected.
func New(cfg *Config) (*Source, error) {
	rc, err := cfg.restConfig()
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, rest: rc, kick: make(chan struct{}, 1), meta: map[string]objectMeta{}}
	if cfg.MeshConfig != "" {
		if s.mesh, s.meshData, err = readMeshConfig(cfg.MeshConfig); err != nil {
			return nil, err
		}
	}
	s.vis.defaults = s.mesh
	if len(cfg.Namespaces) == 0 && !cfg.ClientsOnly {
		kubewatch.Want(rc, s.serviceNeeds()) // it watches the whole cluster: through the shared informers
	}
	if cfg.Clients {
		s.clients = &clientIndex{}
	}
	return s, nil
}

// Kind implements source.Source.
func (s *Source) Kind() string { return "kubernetes" }

// serviceNeeds is what the names of a Service are built from beyond its addresses: who may see them.
func (s *Source) serviceNeeds() kubewatch.ServiceNeeds {
	return kubewatch.ServiceNeeds{Annotations: []string{exportToAnnotation}}
}

// RestConfig is the client configuration of this cluster, for another source that watches it too
// (multicluster), so that both reach it alike.
func (s *Source) RestConfig() *rest.Config { return s.rest }

// HandleDebug has the debug endpoint, when the block has one, serve h at path too: another source
// of this cluster's (multicluster, /multicluster) explains its answers there. Call it before Run.
func (s *Source) HandleDebug(path string, h http.Handler) {
	if s.debug == nil {
		s.debug = map[string]http.Handler{}
	}
	s.debug[path] = h
}

// String implements source.Source.
func (s *Source) String() string { return s.cfg.String() }

// NamespaceOf implements source.Clients: the namespace of the pod with address a, when this source
// learns clients.
func (s *Source) NamespaceOf(a netip.Addr) (string, bool) {
	if s.clients == nil {
		return "", false
	}
	return s.clients.NamespaceOf(a)
}

// ClientNamespaces implements source.ClientNamespaces: the namespaces of the pods this source
// learns as clients. Without clients it never syncs (and its channel is nil).
func (s *Source) ClientNamespaces() ([]string, bool, <-chan struct{}) {
	if s.clients == nil {
		return nil, false, nil
	}
	return s.clients.ClientNamespaces()
}

// StartupTimeout is how long the server's start waits for this source's first table.
func (s *Source) StartupTimeout() time.Duration { return s.cfg.StartupTimeout }

// informers are the watches of one namespace, or of all of them.
type nsInformers struct {
	services, slices, serviceEntries, imports, sidecars cache.SharedIndexInformer
}

// Run implements source.Source: it watches until ctx ends, publishing the first table once every
// informer has synced and then, after each burst of changes, a table with the changed objects redone.
func (s *Source) Run(ctx context.Context, sink source.Sink) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runStart := time.Now()
	kube, err := kubernetes.NewForConfig(s.rest)
	if err != nil {
		sink.Reject(fmt.Errorf("kubernetes client: %w", err))
		return
	}
	plain, err := kubewatch.PlainClient(s.rest) // for Services
	if err != nil {
		sink.Reject(fmt.Errorf("kubernetes client: %w", err))
		return
	}
	// Custom resources the cluster does not serve are left out (and said so): their informers would
	// never sync, and the source never be ready.
	withSE := s.cfg.ServiceEntries && s.serves(kube, serviceEntryGVR, "Istio's CRDs are not installed: ServiceEntries are not watched")
	withSidecars := s.cfg.Sidecars && s.serves(kube, sidecarGVR, "Istio's CRDs are not installed: Sidecars are not watched")
	var importGVR schema.GroupVersionResource
	if s.cfg.ClustersetZone != "" {
		for _, gvr := range serviceImportGVRs {
			if s.serves(kube, gvr, "") {
				importGVR = gvr
				break
			}
		}
		if importGVR.Empty() {
			log.Warningf("%s: the cluster serves no ServiceImport (the MCS CRDs are not installed): %s has only its dns-version record", s, s.cfg.ClustersetZone)
		}
	}
	var dyn dynamic.Interface
	if withSE || withSidecars || !importGVR.Empty() {
		if dyn, err = dynamic.NewForConfig(s.rest); err != nil {
			sink.Reject(fmt.Errorf("kubernetes dynamic client: %w", err))
			return
		}
	}

	s.dirty = newDirty()
	s.clusterDomain = strings.ToLower(strings.Trim(s.cfg.ClusterDomain, "."))
	byNS := map[string]*nsInformers{}
	var (
		synced      []cache.InformerSynced
		syncedNames []string // the resource of each, for the log
	)
	waitFor := func(resource string, f cache.InformerSynced) {
		synced, syncedNames = append(synced, f), append(syncedNames, resource)
	}
	var started []interface {
		Start(<-chan struct{})
		Shutdown()
	}
	// On the way out: stop the informers and wait for every goroutine they started, so that a
	// Corefile reload leaves nothing behind.
	defer func() {
		cancel()
		for _, f := range started {
			f.Shutdown()
		}
	}()
	namespaces := s.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	if s.cfg.ClientsOnly {
		namespaces = nil // pods only: it publishes an empty table, and knows clients
	}
	indexers := cache.Indexers{kubewatch.ServiceIndex: kubewatch.SliceService, importIndex: sliceImport}
	for _, ns := range namespaces {
		w := &nsInformers{}
		f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns))
		if ns == metav1.NamespaceAll {
			// The whole cluster: its Services and EndpointSlices are listed and cached once for this
			// source and the block's multicluster source.
			ci, release, err := kubewatch.Acquire(s.rest, kube, plain, indexers)
			if err != nil {
				sink.Reject(fmt.Errorf("kubernetes informers: %w", err))
				return
			}
			defer release()
			w.services, w.slices = ci.Services, ci.Slices
		} else {
			sf := informers.NewSharedInformerFactoryWithOptions(plain, 0, informers.WithNamespace(ns))
			started = append(started, sf)
			w.services = sf.Core().V1().Services().Informer()
			w.slices = f.Discovery().V1().EndpointSlices().Informer()
			kubewatch.Must(w.services.SetTransform(kubewatch.Reuse(w.services, kubewatch.TrimService(s.serviceNeeds()))))
			kubewatch.Must(w.slices.SetTransform(kubewatch.Reuse(w.slices, kubewatch.TrimEndpointSlice(kubewatch.SliceLabels...))))
			kubewatch.Must(w.slices.AddIndexers(indexers))
		}
		svcSynced := s.handle(w.services, "services", func(obj any) { s.markService(keyOf(obj)) })
		slicesSynced := s.handle(w.slices, "endpointslices", func(obj any) {
			if key := kubewatch.SliceServiceKey(obj); key != "" {
				s.markService(key)
			}
			if key := sliceImportKey(obj); key != "" && s.cfg.ClustersetZone != "" {
				s.markImport(key)
			}
		})
		// Before release: the shared informers may outlive this source.
		defer w.services.RemoveEventHandler(svcSynced)
		defer w.slices.RemoveEventHandler(slicesSynced)
		waitFor("services", svcSynced.HasSynced)
		waitFor("endpointslices", slicesSynced.HasSynced)
		started = append(started, f)
		if dyn != nil {
			df := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, ns, nil)
			if withSE {
				w.serviceEntries = df.ForResource(serviceEntryGVR).Informer()
				kubewatch.Must(w.serviceEntries.SetTransform(kubewatch.Reuse(w.serviceEntries, trimServiceEntry)))
				waitFor("serviceentries", s.handle(w.serviceEntries, "serviceentries", func(obj any) { s.markServiceEntry(keyOf(obj)) }).HasSynced)
			}
			if withSidecars {
				w.sidecars = df.ForResource(sidecarGVR).Informer()
				kubewatch.Must(w.sidecars.SetTransform(trimSidecar))
				waitFor("sidecars", s.handle(w.sidecars, "sidecars", func(any) { s.markVisibility() }).HasSynced)
			}
			if !importGVR.Empty() {
				w.imports = df.ForResource(importGVR).Informer()
				kubewatch.Must(w.imports.SetTransform(trimServiceImport))
				waitFor("serviceimports", s.handle(w.imports, "serviceimports", func(obj any) { s.markImport(keyOf(obj)) }).HasSynced)
			}
			started = append(started, df)
		}
		byNS[ns] = w
	}
	var pods cache.SharedIndexInformer
	if s.clients != nil {
		f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			if s.cfg.ClientsNode != "" {
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", s.cfg.ClientsNode).String()
			}
		}))
		pods = f.Core().V1().Pods().Informer()
		kubewatch.Must(pods.SetTransform(kubewatch.Reuse(pods, trimPod)))
		waitFor("pods", s.handle(pods, "pods", func(any) { s.markPods() }).HasSynced)
		started = append(started, f)
	}
	if ref := s.cfg.MeshConfigMap; ref != "" {
		ns, name, _ := strings.Cut(ref, "/")
		f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns), informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
		cms := f.Core().V1().ConfigMaps().Informer()
		cmsSynced := s.handle(cms, "configmaps", func(any) { s.meshConfigMapChanged(cms.GetStore()) })
		// Its first state, even "none", is in before the first table: no name shows before the
		// mesh's exportTo default says who may see it.
		waitFor("configmaps", func() bool {
			if !cmsSynced.HasSynced() {
				return false
			}
			s.meshConfigMapChanged(cms.GetStore())
			return true
		})
		started = append(started, f)
	}
	for _, f := range started {
		f.Start(ctx.Done())
	}
	if s.cfg.Debug != "" {
		stop, err := s.serveDebug()
		if err != nil {
			sink.Reject(err)
		} else {
			defer stop()
		}
	}
	probing := make(chan struct{})
	go func() {
		defer close(probing)
		s.probe(ctx, kube)
	}()
	defer func() { cancel(); <-probing }()

	begin := time.Now()
	took, ok := kubewatch.WaitSyncedTimed(ctx, synced)
	if !ok {
		return // stopped before the first sync
	}
	listed := time.Now()
	// The handlers have marked every object of the first lists: the first flush indexes them all.
	s.view.Lock()
	s.informersOf = func(ns string) *nsInformers {
		if w, ok := byNS[ns]; ok {
			return w
		}
		return byNS[metav1.NamespaceAll]
	}
	s.view.Unlock()
	s.mu.Lock()
	s.dirty.pods, s.dirty.vis = true, true
	s.mu.Unlock()
	if z := s.cfg.ClustersetZone; z != "" {
		s.view.Lock()
		s.set("z/"+z, zoneEntries(z))
		s.view.Unlock()
	}
	sidecarsOf := func() []*sidecar {
		var out []*sidecar
		for _, w := range byNS {
			if w.sidecars == nil {
				continue
			}
			for _, o := range w.sidecars.GetStore().List() {
				if sc, ok := o.(*sidecar); ok {
					out = append(out, sc)
				}
			}
		}
		return out
	}
	flush := func() { s.flush(sink, pods, sidecarsOf) }
	flush()
	// Where the time to ready goes: asking what the cluster serves and starting the informers, the
	// lists, the first table.
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	log.Infof("%s: synced in %v (set-up %v, lists %v: %s; first table %v: %s)", s, ms(time.Since(runStart)),
		ms(begin.Sub(runStart)), ms(listed.Sub(begin)), listTimes(syncedNames, took), ms(time.Since(listed)), s.firstTable)
	if s.cfg.MeshConfig != "" {
		go watchMeshConfig(ctx, s.cfg.MeshConfig, s.meshData, func(d meshDefaults) {
			log.Infof("%s: mesh config %s read again", s, s.cfg.MeshConfig)
			s.mu.Lock()
			s.mesh, s.dirty.vis = d, true
			s.mu.Unlock()
			s.signal()
		}, func(err error) {
			invalidTotal.WithLabelValues(s.cfg.Cluster, "meshconfig").Inc()
			log.Errorf("%s: %v", s, err)
		})
	}
	// The first lists and the first table leave garbage several times the table's size. A resolver
	// on every node runs for weeks: hand it back to the node now, not whenever the scavenger would.
	debug.FreeOSMemory()

	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		// A change after a quiet spell is applied at once; in a burst, at most one rebuild per
		// coalesce interval, with everything that changed meanwhile.
		if wait := time.Until(last.Add(coalesce)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		flush()
	}
}

// listTimes says when each resource's first list was in, the slowest of its namespaces.
func listTimes(resources []string, took []time.Duration) string {
	slowest := map[string]time.Duration{}
	var order []string
	for i, r := range resources {
		if _, ok := slowest[r]; !ok {
			order = append(order, r)
		}
		slowest[r] = max(slowest[r], took[i])
	}
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = fmt.Sprintf("%s %v", r, slowest[r].Round(time.Millisecond))
	}
	return strings.Join(parts, ", ")
}

// serves reports whether the cluster serves the resource gvr, logging why not with why when it is
// not empty. An API server that cannot be asked yet is assumed to serve it: the informer waits for it.
func (s *Source) serves(kube kubernetes.Interface, gvr schema.GroupVersionResource, why string) bool {
	if kubewatch.ServesResource(kube, gvr, true) {
		return true
	}
	if why != "" {
		log.Warningf("%s: the cluster does not serve %s %s (%s)", s, gvr.GroupVersion(), gvr.Resource, why)
	}
	return false
}

// handle sends every add, update and delete of inf to mark, counting them under resource. The first
// table waits for the registration it returns to have synced (the handler has had every object of
// the first list), not for the informer's own sync, or the first list's events would arrive after
// the first table and redo every name a second time.
func (s *Source) handle(inf cache.SharedIndexInformer, resource string, mark func(any)) cache.ResourceEventHandlerRegistration {
	events := eventsTotal.WithLabelValues(s.cfg.Cluster, resource)
	on := func(obj any) {
		events.Inc()
		mark(obj)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: on,
		UpdateFunc: func(old, cur any) {
			if kubewatch.Unchanged(old, cur) {
				return // a relist replaying what is known
			}
			// An EndpointSlice may move to another Service: both must be redone.
			if k := kubewatch.SliceServiceKey(old); k != "" && k != kubewatch.SliceServiceKey(cur) {
				s.markService(k)
			}
			if k := sliceImportKey(old); k != "" && k != sliceImportKey(cur) && s.cfg.ClustersetZone != "" {
				s.markImport(k)
			}
			on(cur)
		},
		DeleteFunc: on,
	})
	kubewatch.Must(err)
	if !kubewatch.IsShared(inf) { // a shared informer logs its own (kubewatch.Acquire)
		kubewatch.Must(inf.SetWatchErrorHandlerWithContext(func(_ context.Context, r *cache.Reflector, err error) {
			log.Warningf("%s: watching %s: %v", s, resource, err)
		}))
	}
	return reg
}

func (s *Source) markService(key string) {
	s.mu.Lock()
	s.dirty.svc[key] = true
	s.mu.Unlock()
	s.signal()
}

func (s *Source) markServiceEntry(key string) {
	s.mu.Lock()
	s.dirty.se[key] = true
	s.mu.Unlock()
	s.signal()
}

func (s *Source) markImport(key string) {
	s.mu.Lock()
	s.dirty.imp[key] = true
	s.mu.Unlock()
	s.signal()
}

func (s *Source) markVisibility() {
	s.mu.Lock()
	s.dirty.vis = true
	s.mu.Unlock()
	s.signal()
}

func (s *Source) markPods() {
	s.mu.Lock()
	s.dirty.pods = true
	s.mu.Unlock()
	s.signal()
}

func (s *Source) signal() {
	select {
	case s.kick <- struct{}{}:
	default: // a flush is already due
	}
}

// flush redoes the entries of the objects changed since the last flush and publishes the result.
func (s *Source) flush(sink source.Sink, pods cache.SharedIndexInformer, sidecarsOf func() []*sidecar) {
	s.mu.Lock()
	d := s.dirty
	s.dirty = newDirty()
	mesh := s.mesh
	s.mu.Unlock()

	// What the sink is given is made under view and handed over after it: the store may ask for
	// entries again (HostEntries) while it holds its own lock, which it takes in Publish and Change.
	first := !s.published
	start := time.Now()
	s.view.Lock()
	deliver := s.redoDirty(sink, pods, sidecarsOf, mesh, d)
	s.view.Unlock()
	made := time.Now()
	if deliver != nil {
		deliver()
	}
	if first {
		s.firstTable.redo = made.Sub(start) - s.firstTable.snapshot
		s.firstTable.publish = time.Since(made)
	}
}

// dirty is what changed since the last flush.
type dirty struct {
	svc, se, imp map[string]bool // "ns/name" of Services, ServiceEntries, ServiceImports to redo
	pods         bool            // the client index is rebuilt
	vis          bool            // a Sidecar or the mesh config changed: every host's visibility is redone
}

func newDirty() dirty {
	return dirty{svc: map[string]bool{}, se: map[string]bool{}, imp: map[string]bool{}}
}

// redoDirty redoes what d marks and returns what to hand the sink, nil when nothing changed. The
// caller holds view for writing.
func (s *Source) redoDirty(sink source.Sink, pods cache.SharedIndexInformer, sidecarsOf func() []*sidecar, mesh meshDefaults,
	d dirty) (deliver func()) {
	if d.vis {
		own, errs := namespaceSidecars(sidecarsOf())
		for _, err := range errs {
			invalidTotal.WithLabelValues(s.cfg.Cluster, "sidecars").Inc()
			log.Warningf("%s: %v; left out", s, err)
		}
		s.vis = newVisibility(mesh, own)
	}

	s.flushing = true
	defer func() {
		s.flushing = false
		// No copy is kept (the store asks again: HostEntries), nor the maps' room: the first flush
		// grows them to every object and host of the cluster.
		s.recent = nil
	}()
	for key := range d.svc {
		s.redo("s/"+key, "services")
	}
	for key := range d.se {
		s.redo("e/"+key, "serviceentries")
	}
	for key := range d.imp {
		s.redo("i/"+key, "serviceimports")
	}
	if d.pods && pods != nil {
		clientsGauge.WithLabelValues(s.cfg.Cluster).Set(float64(s.clients.rebuild(pods.GetStore().List())))
	}
	defer func() { s.changed = nil }()
	cs, incremental := sink.(source.ChangeSink)
	switch {
	case !s.published || !incremental || d.vis:
		if s.published && len(s.changed) == 0 && !d.vis {
			return nil
		}
		start := time.Now()
		entries := s.snapshot()
		if !s.published {
			s.firstTable.snapshot = time.Since(start)
		}
		s.published = true
		return func() { sink.Publish(entries) }
	case len(s.changed) > 0:
		hosts := make(map[string][]table.Entry, len(s.changed))
		for h := range s.changed {
			hosts[h] = s.entriesFor(h)
		}
		return func() { cs.Change(hosts) }
	}
	return nil
}

// HostEntries implements source.Recomputer: this source's entries for canonical host h, from what
// the informers hold now. The store keeps no copy of what it was given, and asks here instead.
func (s *Source) HostEntries(h string) []table.Entry {
	s.view.Lock()
	defer s.view.Unlock()
	return s.entriesFor(h)
}

// Entries implements source.Recomputer: every entry of this source, as snapshot lists them, from
// what the informers hold now.
func (s *Source) Entries() []table.Entry {
	s.view.Lock()
	defer s.view.Unlock()
	s.flushing = true // each object's entries kept for its other hosts, as in a flush
	defer func() {
		s.flushing = false
		s.recent = nil
	}()
	return s.snapshot()
}

// checked logs the exportTo values of m that istiod's validation would refuse: they apply as istiod
// applies them all the same.
func (s *Source) checked(key string, m objectMeta) objectMeta {
	if old, ok := s.meta[key]; ok && slices.Equal(old.exportTo, m.exportTo) {
		return m // said already: EndpointSlice changes redo a Service's names again and again
	}
	for _, err := range checkExportTo(m.exportTo, m.object(), m.field) {
		invalidTotal.WithLabelValues(s.cfg.Cluster, "exportto").Inc()
		log.Warningf("%s: %v", s, err)
	}
	return m
}

// entriesFor gathers this source's entries for canonical host h, object by object in key order,
// with the visibility exportTo and Sidecars give them.
// The caller holds view for writing (a flush): the candidates' slice is reused from host to host.
func (s *Source) entriesFor(h string) []table.Entry {
	cands, rest := s.appendCandidates(s.cands[:0], h)
	s.cands = cands[:0]
	if len(cands) == 0 {
		return rest
	}
	out := append(s.vis.resolve(cands), rest...)
	clear(cands) // what they point to is the store's now
	return out
}

// candidates are the objects naming canonical host h whose visibility exportTo and Sidecars decide
// (Services, ServiceEntries), and the entries of the others (ServiceImports, zones).
func (s *Source) candidates(h string) ([]candidate, []table.Entry) {
	return s.appendCandidates(nil, h)
}

// appendCandidates is candidates appended to cands.
func (s *Source) appendCandidates(cands []candidate, h string) ([]candidate, []table.Entry) {
	var rest []table.Entry
	for k := range s.hosts.keys(h) {
		mine := hostRun(s.entriesOf(k), h)
		m, ok := s.meta[k]
		if !ok {
			rest = append(rest, mine...)
			continue
		}
		svcHost := h                  // a ServiceEntry's hosts are each their own
		if m.kube && s.cfg.Sidecars { // only Sidecars read it
			svcHost = m.name + "." + m.ns + ".svc." + s.clusterDomain
		}
		cands = append(cands, candidate{key: k, objectMeta: m, svcHost: svcHost, entries: mine})
	}
	return cands, rest
}

// hostRun is the entries of es for canonical host h. An object names each host in one run (a
// Service, then its per-pod names), so that is a subslice of es, capped so that no append reaches
// past it, rather than a copy per host: the first snapshot redoes every host of the cluster.
func hostRun(es []table.Entry, h string) []table.Entry {
	i := 0
	for i < len(es) && !isHost(es[i].Host, h) {
		i++
	}
	j := i
	for j < len(es) && isHost(es[j].Host, h) {
		j++
	}
	for k := j; k < len(es); k++ {
		if isHost(es[k].Host, h) { // the host again, after others: copy them together
			out := slices.Clone(es[i:j])
			for ; k < len(es); k++ {
				if isHost(es[k].Host, h) {
					out = append(out, es[k])
				}
			}
			return out
		}
	}
	if i == j {
		return nil
	}
	return es[i:j:j]
}

// isHost reports whether host is canonical host h in any form, comparing lengths before it
// lowers: most of an object's hosts differ from h in length, and sources give canonical hosts.
func isHost(host, h string) bool {
	return host == h || (len(host) == len(h) || len(host)+1 == len(h)) && table.CanonicalHost(host) == h
}

// setMeta records what the visibility of an object's names depends on; when that changed, so may
// every host the object names.
func (s *Source) setMeta(key string, m objectMeta) {
	if old, ok := s.meta[key]; !ok || !old.equal(m) {
		s.markHosts(key)
	}
	s.meta[key] = m
}

// markHosts marks the hosts the object key names as changed.
func (s *Source) markHosts(key string) {
	if s.changed == nil {
		s.changed = map[string]bool{}
	}
	for _, h := range s.hosts.hosts(key) {
		s.changed[h] = true
	}
}

// set records the entries of one object, and which hosts changed with it: none when the object
// names what it named (a relist, an EndpointSlice update that moved nothing answered).
func (s *Source) set(key string, entries []table.Entry) {
	if s.sums == nil {
		s.sums = map[string]uint64{}
	}
	if s.changed == nil {
		s.changed = map[string]bool{}
	}
	if s.recent == nil {
		s.recent = map[string][]table.Entry{}
	}
	s.recent[key] = entries
	sum := entriesSum(entries)
	if old, ok := s.sums[key]; ok && old == sum {
		return
	}
	s.markHosts(key)
	if len(entries) == 0 {
		s.hosts.remove(key)
		delete(s.sums, key)
		delete(s.meta, key)
		return
	}
	hosts := make([]string, 0, len(entries))
	for _, e := range entries {
		h := table.CanonicalHost(e.Host)
		if len(hosts) == 0 || hosts[len(hosts)-1] != h { // an object names a host in one run
			hosts = append(hosts, h)
		}
		s.changed[h] = true
	}
	s.hosts.set(key, orderHosts(hosts))
	s.sums[key] = sum
}

// snapshot lists every entry, host by host in order, objects in key order: the same objects always
// make the same table.
func (s *Source) snapshot() []table.Entry {
	hosts := s.hosts.all()
	out := make([]table.Entry, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, s.entriesFor(h)...)
	}
	return out
}

// probe checks the API server every probeEvery, for the connected metric and a log line at each
// change: the informers retry on their own, and the table keeps its last data meanwhile.
func (s *Source) probe(ctx context.Context, kube kubernetes.Interface) {
	// The gauge counts the instances that reach the API server, so that the old and the new instance
	// of a reload, briefly both probing, do not overwrite each other's state.
	gauge := connectedGauge.WithLabelValues(s.cfg.Cluster)
	state := -1
	defer func() {
		if state == 1 {
			gauge.Dec()
		}
	}()
	for {
		pctx, cancel := context.WithTimeout(ctx, probeEvery)
		_, err := kube.Discovery().RESTClient().Get().AbsPath("/version").Do(pctx).Raw()
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := 1
		if err != nil {
			now = 0
		}
		if now != state {
			if now == 1 && state == 0 {
				log.Infof("%s: API server reachable again", s)
			} else if now == 0 {
				log.Errorf("%s: API server unreachable, serving the last data: %v", s, err)
			}
			if now == 1 {
				gauge.Inc()
			} else if state == 1 {
				gauge.Dec()
			}
			state = now
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(probeEvery):
		}
	}
}

// keyOf is the "ns/name" key of an object or of the tombstone of a deleted one.
func keyOf(obj any) string {
	k, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	return k
}

// sliceImportKey is the "ns/name" of the ServiceImport an MCS EndpointSlice (or its tombstone)
// belongs to.
func sliceImportKey(obj any) string { return kubewatch.SliceKey(obj, labelImportName) }

func sliceImport(obj any) ([]string, error) { return kubewatch.SliceIndex(obj, labelImportName) }
