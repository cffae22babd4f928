package kubewatch

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	} {
		if got := Unchanged(c.old, c.cur); got != c.want {
			t.Errorf("%s: Unchanged = %v, want %v", c.name, got, c.want)
		}
	}
}
