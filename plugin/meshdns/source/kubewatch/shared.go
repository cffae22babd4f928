package kubewatch

import (
	"context"
	"sync"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// SliceLabels are the EndpointSlice labels the shared informer keeps: the Service's name, and for
// MCS the ServiceImport's and the source cluster's.
var SliceLabels = []string{discoveryv1.LabelServiceName, "multicluster.kubernetes.io/service-name", "multicluster.kubernetes.io/source-cluster"}

// ClusterInformers are the Service and EndpointSlice informers of every namespace of one cluster,
// shared by the sources of this process that watch it through the same client configuration (a
// kubernetes block's own source and its multicluster source): the cluster is listed, watched and
// cached once.
type ClusterInformers struct {
	Services, Slices cache.SharedIndexInformer

	rc        *rest.Config
	factories []informers.SharedInformerFactory // Services', EndpointSlices'
	cancel    context.CancelFunc
	users     int
}

var log = clog.NewWithPlugin("meshdns")

// IsShared reports whether inf is one of the shared informers, started by Acquire: its watch error
// handler is set already, and cannot be set again.
func IsShared(inf cache.SharedIndexInformer) bool {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for _, ci := range shared.active {
		if inf == ci.Services || inf == ci.Slices {
			return true
		}
	}
	return false
}

var shared = struct {
	mu     sync.Mutex
	needs  map[*rest.Config]ServiceNeeds
	active map[*rest.Config]*ClusterInformers
}{needs: map[*rest.Config]ServiceNeeds{}, active: map[*rest.Config]*ClusterInformers{}}

// Want says, at setup, before any source starts, what a source of cluster rc will read of its
// Services: the shared informer is made keeping what all of them want.
func Want(rc *rest.Config, needs ServiceNeeds) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.needs[rc] = shared.needs[rc].union(needs)
}

// Acquire returns the shared informers of cluster rc, running, with the indexers given added (an
// index already there is kept): the Services watched through plain (PlainClient), the EndpointSlices
// through kube. Call release when done: the last release stops them. Handlers added
// to them must be removed before release, as the informers may outlive their source.
func Acquire(rc *rest.Config, kube, plain kubernetes.Interface, indexers cache.Indexers) (ci *ClusterInformers, release func(), err error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	ci = shared.active[rc]
	if ci == nil {
		sf := informers.NewSharedInformerFactory(plain, 0)
		f := informers.NewSharedInformerFactory(kube, 0)
		ci = &ClusterInformers{rc: rc, factories: []informers.SharedInformerFactory{sf, f},
			Services: sf.Core().V1().Services().Informer(), Slices: f.Discovery().V1().EndpointSlices().Informer()}
		if err := ci.Services.SetTransform(Reuse(ci.Services, TrimService(shared.needs[rc]))); err != nil {
			return nil, nil, err
		}
		if err := ci.Slices.SetTransform(Reuse(ci.Slices, TrimEndpointSlice(SliceLabels...))); err != nil {
			return nil, nil, err
		}
		// Set before the start, as client-go wants: the sources' own handlers cannot be.
		for resource, inf := range map[string]cache.SharedIndexInformer{"services": ci.Services, "endpointslices": ci.Slices} {
			if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
				log.Warningf("cluster %s: watching %s: %v", rc.Host, resource, err)
			}); err != nil {
				return nil, nil, err
			}
		}
		shared.active[rc] = ci
	}
	missing := cache.Indexers{}
	have := ci.Slices.GetIndexer().GetIndexers()
	for name, fn := range indexers {
		if _, ok := have[name]; !ok {
			missing[name] = fn
		}
	}
	if len(missing) > 0 {
		if err := ci.Slices.AddIndexers(missing); err != nil {
			return nil, nil, err
		}
	}
	if ci.users == 0 {
		ctx, cancel := context.WithCancel(context.Background())
		ci.cancel = cancel
		for _, f := range ci.factories {
			f.Start(ctx.Done())
		}
	}
	ci.users++
	var once sync.Once
	return ci, func() { once.Do(ci.release) }, nil
}

func (ci *ClusterInformers) release() {
	shared.mu.Lock()
	ci.users--
	last := ci.users == 0
	if last {
		delete(shared.active, ci.rc)
		delete(shared.needs, ci.rc)
	}
	shared.mu.Unlock()
	if last {
		ci.cancel()
		for _, f := range ci.factories {
			f.Shutdown()
		}
	}
}
