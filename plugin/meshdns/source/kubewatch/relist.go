package kubewatch

import (
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
	return o.GetResourceVersion() != "" && o.GetResourceVersion() == c.GetResourceVersion() && o.GetUID() == c.GetUID()
}
