package multicluster

import (
	"context"
	"slices"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// remoteSecretLabel marks Istio's remote secrets: each data key is a cluster id, its value a
// kubeconfig for that cluster.
const remoteSecretLabel = "istio/multiCluster"

// Locality annotations read from a remote secret (meshdns's own: Istio takes locality from nodes).
const (
	regionAnnotation = "topology.kubernetes.io/region"
	zoneAnnotation   = "topology.kubernetes.io/zone"
)

// watchSecrets follows Istio remote secrets in this cluster: each adds the clusters it names, and
// removing it drops them, without a restart.
func (m *Mesh) watchSecrets(ctx context.Context) func() {
	kube, err := kubernetes.NewForConfig(m.local.Rest)
	if err != nil {
		log.Errorf("%s: remote secrets: %v", m, err)
		return func() {}
	}
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(m.cfg.RemoteSecrets),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = remoteSecretLabel + "=true" }))
	inf := f.Core().V1().Secrets().Informer()
	apply := func(obj any, gone bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		sec, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		key := sec.Namespace + "/" + sec.Name
		// Drop the clusters this secret added that it no longer names.
		m.mu.Lock()
		var drop []string
		for id, c := range m.clusters {
			if _, still := sec.Data[id]; c.secret == key && (gone || !still) {
				drop = append(drop, id)
			}
		}
		m.mu.Unlock()
		for _, id := range drop {
			m.remove(id)
		}
		if gone {
			return
		}
		loc := Locality{Region: sec.Annotations[regionAnnotation], Zone: sec.Annotations[zoneAnnotation]}
		ids := make([]string, 0, len(sec.Data))
		for id := range sec.Data {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if id == m.local.Cluster {
				continue // Istio puts no secret for the local cluster; ignore one that does
			}
			m.mu.Lock()
			c, exists := m.clusters[id]
			m.mu.Unlock()
			if exists && c.secret != key {
				log.Warningf("%s: remote secret %s names cluster %s, already watched; ignored", m, key, id)
				continue
			}
			rc, err := kubewatch.RestConfig("", "", sec.Data[id])
			if err != nil {
				log.Errorf("%s: remote secret %s: cluster %s: %v", m, key, id, err)
				continue
			}
			m.add(id, rc, "", loc, false, key)
		}
	}
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { apply(obj, false) },
		UpdateFunc: func(_, obj any) { apply(obj, false) },
		DeleteFunc: func(obj any) { apply(obj, true) },
	})
	kubewatch.Must(err)
	sctx, cancel := context.WithCancel(ctx)
	f.Start(sctx.Done())
	kubewatch.WaitSynced(sctx, []cache.InformerSynced{inf.HasSynced})
	return func() { cancel(); f.Shutdown() }
}
