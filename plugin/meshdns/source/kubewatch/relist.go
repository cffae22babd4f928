package kubewatch

import (
	"github.com/meshdns/meshdns/plugin/meshdns/gctarget"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
)

// Unchanged reports whether an informer's update carries the object it had already: after a watch
// is lost and the informer lists again, every object it still holds comes back as an update of
// itself. Handlers skip those, so a relist costs what changed during the outage, not a rebuild of
// everything.
func Unchanged(old, cur any) bool {
	if d, ok := old.(cache.DeletedFinalStateUnknown); ok {
		old = d.Obj
	}
	o, err := meta.Accessor(old)
	if err != nil {
		return false
	}
	c, err := meta.Accessor(cur)
	if err != nil {
		return false
	}
	return o.GetResourceVersion() != "" && o.GetResourceVersion() == c.GetResourceVersion() && uidSumOf(o) == uidSumOf(c)
}

// Reuse is trim, except for an object the informer inf holds already at the same resource version:
// its cached form is returned, not a new copy. A relist (after a lost watch, an API server restart)
// brings every object back; without this each is trimmed again, and the informer holds two copies
// of the cluster until the old ones are collected; and it tells the collector a relist is on
// (gctarget.Relisting), whose stream is then all garbage. Set it as inf's transform.
func Reuse(inf cache.SharedIndexInformer, trim cache.TransformFunc) cache.TransformFunc {
	return func(obj any) (any, error) {
		if cur, err := meta.Accessor(obj); err == nil && cur.GetResourceVersion() != "" {
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				if old, ok, _ := inf.GetIndexer().GetByKey(key); ok && Unchanged(old, obj) {
					gctarget.Relisting()
					return old, nil
				}
			}
		}
		return trim(obj)
	}
}
