package kubewatch

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

func TestUnchanged(t *testing.T) {
	svc := func(uid, rv string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: types.UID("u" + uid), ResourceVersion: rv}}
	}
	for _, c := range []struct {
		name     string
		old, cur any
		want     bool
	}{
		{"relisted as it was", svc("1", "7"), svc("1", "7"), true},
		{"changed", svc("1", "7"), svc("1", "8"), false},
		{"deleted and made again", svc("1", "7"), svc("2", "7"), false},
		{"no version", svc("1", ""), svc("1", ""), false},
		{"not an object", "x", svc("1", "7"), false},
		// Kept objects hold a checksum of the UID, not the UID: the same answers, kept or not.
		{"kept, relisted as it was", NewService(svc("1", "7"), ServiceNeeds{}), svc("1", "7"), true},
		{"kept, made again", NewService(svc("1", "7"), ServiceNeeds{}), svc("2", "7"), false},
		{"both kept, made again", NewService(svc("1", "7"), ServiceNeeds{}), NewService(svc("2", "7"), ServiceNeeds{}), false},
		{"both kept, changed", NewService(svc("1", "7"), ServiceNeeds{}), NewService(svc("1", "8"), ServiceNeeds{}), false},
		{"both kept, as it was", NewService(svc("1", "7"), ServiceNeeds{}), NewService(svc("1", "7"), ServiceNeeds{}), true},
	} {
		if got := Unchanged(c.old, c.cur); got != c.want {
			t.Errorf("%s: Unchanged = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestReuse(t *testing.T) {
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Service{}, 0, cache.Indexers{})
	trim := TrimService(ServiceNeeds{})
	full := func(uid, rv string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: types.UID(uid), ResourceVersion: rv,
			Annotations: map[string]string{"big": "x"}}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	}
	reuse := Reuse(inf, trim)
	first, _ := reuse(full("u1", "7"))
	if err := inf.GetIndexer().Add(first); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		obj  any
		same bool
	}{
		{"relisted as it was", full("u1", "7"), true},
		{"changed", full("u1", "8"), false},
		{"deleted and made again", full("u2", "7"), false},
		{"a tombstone", cache.DeletedFinalStateUnknown{Key: "shop/web", Obj: full("u1", "7")}, false},
	} {
		got, err := reuse(c.obj)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if same := got == any(first); same != c.same {
			t.Errorf("%s: the cached object returned: %v, want %v", c.name, same, c.same)
		}
		if svc, ok := got.(*Service); ok && svc.Annotations != nil {
			t.Errorf("%s: not trimmed: %v", c.name, svc.Annotations)
		}
	}
}
