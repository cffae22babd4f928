package multicluster

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// serviceExportGVRs are the versions of ServiceExport tried, newest first.
var serviceExportGVRs = []schema.GroupVersionResource{
	{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceexports"},
	{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"},
}

// networkLabel is where Istio reads a cluster's network: a label on its system namespace.
const networkLabel = "topology.istio.io/network"

// clusterWatch follows what one cluster (this one or a remote) offers the mesh: its exported
// Services with their ready endpoints, its east-west gateway's addresses, and whether its API server
// answers.
type clusterWatch struct {
	id       string
	network  string // configured; else read from the cluster (networkLabel)
	locality Locality
	mc       *Config
	changed  func() // called after any change the choice may depend on

	kube       kubernetes.Interface
	services   cache.SharedIndexInformer
	slices     cache.SharedIndexInformer
	exports    cache.SharedIndexInformer // nil when the cluster serves no ServiceExport
	namespaces cache.SharedIndexInformer // the gateway's namespace only, for its network label
	synced     []cache.InformerSynced    // its handlers'

	mu      sync.Mutex
	lastOK  time.Time // the API server's last good answer
	apiErr  string
	stopped chan struct{}
	cancel  context.CancelFunc
}

// exportedService is one Service a cluster exports, as the choice needs it.
type exportedService struct {
	clusterIPs []netip.Addr
	ready      int // ready endpoints
}

// newClusterWatch starts watching cluster id. The local cluster's Services and EndpointSlices come
// from the informers the block's kubernetes source shares (kubewatch.Acquire): listed and cached once.
func newClusterWatch(id string, rc *rest.Config, mc *Config, network string, loc Locality, local bool, changed func()) (*clusterWatch, error) {
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	plain, err := kubewatch.PlainClient(rc) // for Services
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	// The lease runs from the start: a cluster never reached is withdrawn once it has passed.
	w := &clusterWatch{id: id, network: network, locality: loc, mc: mc, changed: changed, kube: kube, stopped: make(chan struct{}), lastOK: time.Now()}
	f := informers.NewSharedInformerFactory(kube, 0)
	indexers := cache.Indexers{kubewatch.ServiceIndex: kubewatch.SliceService}
	factories := []interface {
		Start(<-chan struct{})
		Shutdown()
	}{f}
	release := func() {}
	if local {
		ci, rel, err := kubewatch.Acquire(rc, kube, plain, indexers)
		if err != nil {
			return nil, err
		}
		w.services, w.slices, release = ci.Services, ci.Slices, rel
	} else {
		sf := informers.NewSharedInformerFactory(plain, 0)
		factories = append(factories, sf)
		w.services = sf.Core().V1().Services().Informer()
		w.slices = f.Discovery().V1().EndpointSlices().Informer()
		kubewatch.Must(w.services.SetTransform(kubewatch.TrimService(serviceNeeds)))
		kubewatch.Must(w.slices.SetTransform(kubewatch.TrimEndpointSlice(discoveryv1.LabelServiceName)))
		kubewatch.Must(w.slices.AddIndexers(indexers))
	}
	nf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + mc.GatewayNS
	}))
	w.namespaces = nf.Core().V1().Namespaces().Informer()
	factories = append(factories, nf)
	var df dynamicinformer.DynamicSharedInformerFactory
	for _, gvr := range serviceExportGVRs {
		// A cluster that cannot be asked gets no ServiceExport watch: it is made again when the
		// cluster is added again.
		if kubewatch.ServesResource(kube, gvr, false) {
			df = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
			w.exports = df.ForResource(gvr).Informer()
			kubewatch.Must(w.exports.SetTransform(trimToMeta))
			factories = append(factories, df)
			break
		}
	}
	type handled struct {
		inf cache.SharedIndexInformer
		reg cache.ResourceEventHandlerRegistration
	}
	var handlers []handled
	for _, inf := range []cache.SharedIndexInformer{w.services, w.slices, w.exports, w.namespaces} {
		if inf == nil {
			continue
		}
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { w.changed() },
			UpdateFunc: func(old, cur any) {
				if !kubewatch.Unchanged(old, cur) { // a relist replays every object as an update
					w.changed()
				}
			},
			DeleteFunc: func(any) { w.changed() },
		})
		kubewatch.Must(err)
		handlers = append(handlers, handled{inf, reg})
		w.synced = append(w.synced, reg.HasSynced)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for _, fac := range factories {
		fac.Start(ctx.Done())
	}
	go func() {
		defer close(w.stopped)
		w.probe(ctx)
		for _, h := range handlers {
			_ = h.inf.RemoveEventHandler(h.reg) // the shared informers may outlive this watch
		}
		release()
		for _, fac := range factories {
			fac.Shutdown()
		}
	}()
	return w, nil
}

// stop ends the watch and waits for its goroutines.
func (w *clusterWatch) stop() {
	w.cancel()
	<-w.stopped
}

// hasSynced reports whether every handler has had its informer's first list.
func (w *clusterWatch) hasSynced() bool {
	for _, f := range w.synced {
		if !f() {
			return false
		}
	}
	return true
}

// probe asks the API server for its version every probe interval, for the lease.
func (w *clusterWatch) probe(ctx context.Context) {
	for {
		pctx, cancel := context.WithTimeout(ctx, w.mc.ProbeInterval)
		_, err := w.kube.Discovery().RESTClient().Get().AbsPath("/version").Do(pctx).Raw()
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		if err == nil {
			w.lastOK, w.apiErr = time.Now(), ""
		} else {
			w.apiErr = err.Error()
		}
		w.mu.Unlock()
		w.changed()
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.mc.ProbeInterval):
		}
	}
}

// api returns when the API server last answered, and its last error.
func (w *clusterWatch) api() (time.Time, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastOK, w.apiErr
}

// exported returns the Services the cluster exports, by "ns/name": those with a ServiceExport of the
// same name, or with the export label.
func (w *clusterWatch) exported() map[string]exportedService {
	out := map[string]exportedService{}
	key, value, hasValue := strings.Cut(w.mc.ExportLabel, "=")
	for _, obj := range w.services.GetStore().List() {
		svc, ok := obj.(*kubewatch.Service)
		if !ok {
			continue
		}
		k := svc.Namespace + "/" + svc.Name
		byLabel := false
		if key != "" {
			v, ok := svc.Labels[key]
			byLabel = ok && (!hasValue || v == value)
		}
		if !byLabel {
			if w.exports == nil {
				continue
			}
			if _, ok, _ := w.exports.GetStore().GetByKey(k); !ok {
				continue
			}
		}
		es := exportedService{}
		for _, s := range svc.ClusterIPs {
			if a, err := netip.ParseAddr(s); err == nil {
				es.clusterIPs = append(es.clusterIPs, a)
			}
		}
		objs, _ := w.slices.GetIndexer().ByIndex(kubewatch.ServiceIndex, k)
		for _, o := range objs {
			if sl, ok := o.(*kubewatch.EndpointSlice); ok {
				for _, ep := range sl.Endpoints {
					if ep.Ready && len(ep.Addrs) > 0 {
						es.ready++
					}
				}
			}
		}
		out[k] = es
	}
	return out
}

// gateway returns the addresses of the cluster's east-west gateway: configured ones, else its
// Service's load-balancer ingress IPs (and external IPs).
func (w *clusterWatch) gateway() []netip.Addr {
	if addrs, ok := w.mc.Gateways[w.id]; ok {
		return addrs
	}
	obj, ok, _ := w.services.GetStore().GetByKey(w.mc.GatewayNS + "/" + w.mc.GatewayName)
	if !ok {
		return nil
	}
	svc, ok := obj.(*kubewatch.Service)
	if !ok {
		return nil
	}
	var out []netip.Addr
	for _, s := range svc.GatewayIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			out = kubewatch.AppendNew(out, []netip.Addr{a})
		}
	}
	return out
}

// networkOf is the cluster's network: configured, or the label on its gateway's namespace.
func (w *clusterWatch) networkOf() string {
	if w.network != "" {
		return w.network
	}
	obj, ok, _ := w.namespaces.GetStore().GetByKey(w.mc.GatewayNS)
	if !ok {
		return ""
	}
	return obj.(*corev1.Namespace).Labels[networkLabel]
}

// serviceNeeds is what the multicluster choice reads of Services beyond their addresses: labels (the
// export label), and the external IPs and load-balancer status of gateways.
var serviceNeeds = kubewatch.ServiceNeeds{Labels: true, Gateway: true}

// trimToMeta keeps an object's name and namespace only (ServiceExports: their existence is the fact).
func trimToMeta(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetName(u.GetName())
	out.SetNamespace(u.GetNamespace())
	out.SetResourceVersion(u.GetResourceVersion())
	return out, nil
}
