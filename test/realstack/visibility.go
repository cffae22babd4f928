package realstack

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// SidecarGVR is Istio's Sidecar.
var SidecarGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "sidecars"}

// CreateSidecar creates an Istio Sidecar ns/name with one egress listener of hosts ("ns/host"), and a
// workloadSelector of selector when it is not empty (nil: namespace-wide; in the root namespace, the
// mesh's default Sidecar).
func (s *Stack) CreateSidecar(ns, name string, selector map[string]string, hosts ...string) error {
	spec := map[string]any{"egress": []any{map[string]any{"hosts": toAny(hosts)}}}
	if len(selector) > 0 {
		labels := map[string]any{}
		for k, v := range selector {
			labels[k] = v
		}
		spec["workloadSelector"] = map[string]any{"labels": labels}
	}
	return s.CreateObject(SidecarGVR, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
		"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec}})
}

// DeleteSidecar deletes Sidecar ns/name.
func (s *Stack) DeleteSidecar(ns, name string) error {
	ctx, cancel := opContext()
	defer cancel()
	if err := s.Dynamic.Resource(SidecarGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("sidecar %s/%s: %w", ns, name, err)
	}
	return nil
}

// SetServiceExportTo sets Service ns/name's networking.istio.io/exportTo annotation to exportTo
// (namespaces separated by commas, as written); "" removes it.
func (s *Stack) SetServiceExportTo(ns, name, exportTo string) error {
	var value any = exportTo
	if exportTo == "" {
		value = nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{"networking.istio.io/exportTo": value}}})
	ctx, cancel := opContext()
	defer cancel()
	if _, err := s.Kube.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("service %s/%s: exportTo: %w", ns, name, err)
	}
	return nil
}

// SetServiceEntryExportTo sets ServiceEntry ns/name's spec.exportTo; none removes it.
func (s *Stack) SetServiceEntryExportTo(ns, name string, exportTo ...string) error {
	var value any
	if len(exportTo) > 0 {
		value = toAny(exportTo)
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"exportTo": value}})
	ctx, cancel := opContext()
	defer cancel()
	if _, err := s.Dynamic.Resource(ServiceEntryGVR).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("serviceentry %s/%s: exportTo: %w", ns, name, err)
	}
	return nil
}
