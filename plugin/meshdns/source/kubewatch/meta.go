package kubewatch

import (
	"hash/maphash"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Meta is what a trimmed object keeps of its metadata: 80 bytes where metav1.ObjectMeta is 232, and
// the informers of a large cluster hold tens of thousands of objects. It implements metav1.Object,
// so that client-go's key functions, indexers and meta.Accessor take the trimmed objects as they
// take the API's; what it does not keep reads as unset, and setting it does nothing. The UID is
// kept as a checksum (UIDSum): it only tells an object made again under the same name.
type Meta struct {
	Name, Namespace, ResourceVersion string
	uidSum                           uint64
	Created                          int64 // Unix seconds: the API's timestamps have no finer grain
	Labels, Annotations              map[string]string
}

// MetaOf keeps of m what every trimmed object keeps: names, identity and age. Labels and
// annotations are each object's choice.
func MetaOf(m *metav1.ObjectMeta) Meta {
	out := Meta{Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion, uidSum: sumUID(m.UID)}
	if !m.CreationTimestamp.IsZero() {
		out.Created = m.CreationTimestamp.Unix()
	}
	return out
}

// CreationTime is the object's creation time, the zero time when unknown.
func (m *Meta) CreationTime() metav1.Time {
	if m.Created == 0 {
		return metav1.Time{}
	}
	return metav1.Unix(m.Created, 0)
}

func (m *Meta) GetNamespace() string                          { return m.Namespace }
func (m *Meta) SetNamespace(ns string)                        { m.Namespace = ns }
func (m *Meta) GetName() string                               { return m.Name }
func (m *Meta) SetName(name string)                           { m.Name = name }
func (m *Meta) GetGenerateName() string                       { return "" }
func (m *Meta) SetGenerateName(string)                        {}
func (m *Meta) GetUID() types.UID                             { return "" }
func (m *Meta) SetUID(uid types.UID)                          { m.uidSum = sumUID(uid) }
func (m *Meta) GetResourceVersion() string                    { return m.ResourceVersion }
func (m *Meta) SetResourceVersion(v string)                   { m.ResourceVersion = v }
func (m *Meta) GetGeneration() int64                          { return 0 }
func (m *Meta) SetGeneration(int64)                           {}
func (m *Meta) GetSelfLink() string                           { return "" }
func (m *Meta) SetSelfLink(string)                            {}
func (m *Meta) GetCreationTimestamp() metav1.Time             { return m.CreationTime() }
func (m *Meta) SetCreationTimestamp(t metav1.Time)            { m.Created = t.Unix() }
func (m *Meta) GetDeletionTimestamp() *metav1.Time            { return nil }
func (m *Meta) SetDeletionTimestamp(*metav1.Time)             {}
func (m *Meta) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (m *Meta) SetDeletionGracePeriodSeconds(*int64)          {}
func (m *Meta) GetLabels() map[string]string                  { return m.Labels }
func (m *Meta) SetLabels(l map[string]string)                 { m.Labels = l }
func (m *Meta) GetAnnotations() map[string]string             { return m.Annotations }
func (m *Meta) SetAnnotations(a map[string]string)            { m.Annotations = a }
func (m *Meta) GetFinalizers() []string                       { return nil }
func (m *Meta) SetFinalizers([]string)                        {}
func (m *Meta) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (m *Meta) SetOwnerReferences([]metav1.OwnerReference)    {}
func (m *Meta) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (m *Meta) SetManagedFields([]metav1.ManagedFieldsEntry)  {}

// UIDSum is the checksum of the object's UID.
func (m *Meta) UIDSum() uint64 { return m.uidSum }

// uidSeed keys the UID checksums; they never leave the process.
var uidSeed = maphash.MakeSeed()

func sumUID(uid types.UID) uint64 {
	if uid == "" {
		return 0
	}
	return maphash.String(uidSeed, string(uid))
}

// uidSumOf is o's UID checksum, whether o keeps its UID (the API's objects) or only its checksum.
func uidSumOf(o metav1.Object) uint64 {
	if k, ok := o.(interface{ UIDSum() uint64 }); ok {
		return k.UIDSum()
	}
	return sumUID(o.GetUID())
}

var _ metav1.Object = (*Meta)(nil)
