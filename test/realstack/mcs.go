package realstack

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The Multi-Cluster Services API objects, as an MCS controller (Submariner Lighthouse, GKE MCS, ...)
// writes them into an importing cluster. No such controller runs here: tests write them.

// ServiceImportGVR and ServiceExportGVR are the MCS API's resources (sigs.k8s.io/mcs-api v1beta1).
var (
	ServiceImportGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceimports"}
	ServiceExportGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceexports"}
)

// MCS labels on the EndpointSlices of a ServiceImport.
const (
	LabelImportName    = "multicluster.kubernetes.io/service-name"
	LabelSourceCluster = "multicluster.kubernetes.io/source-cluster"
)

// ImportPort is a port of a ServiceImport.
type ImportPort struct {
	Name, Protocol string
	Port           int64
}

// CreateServiceImport creates ServiceImport ns/name: type ClusterSetIP with ips, or Headless when ips
// is empty and headless is set.
func (s *Stack) CreateServiceImport(ns, name string, headless bool, ips []string, ports ...ImportPort) error {
	kind := "ClusterSetIP"
	if headless {
		kind = "Headless"
	}
	var ps []any
	for _, p := range ports {
		m := map[string]any{"port": p.Port, "protocol": p.Protocol}
		if p.Name != "" {
			m["name"] = p.Name
		}
		ps = append(ps, m)
	}
	spec := map[string]any{"type": kind, "ports": ps}
	if len(ips) > 0 {
		spec["ips"] = toAny(ips)
	}
	return s.CreateObject(ServiceImportGVR, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": ServiceImportGVR.GroupVersion().String(),
		"kind":       "ServiceImport",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}})
}

// DeleteServiceImport deletes ServiceImport ns/name.
func (s *Stack) DeleteServiceImport(ns, name string) error {
	ctx, cancel := opContext()
	defer cancel()
	if err := s.Dynamic.Resource(ServiceImportGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("serviceimport %s/%s: %w", ns, name, err)
	}
	return nil
}

// CreateServiceExport creates ServiceExport ns/name, which exports Service ns/name to the clusterset.
func (s *Stack) CreateServiceExport(ns, name string) error {
	return s.CreateObject(ServiceExportGVR, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": ServiceExportGVR.GroupVersion().String(),
		"kind":       "ServiceExport",
		"metadata":   map[string]any{"name": name, "namespace": ns},
	}})
}

// DeleteServiceExport deletes ServiceExport ns/name.
func (s *Stack) DeleteServiceExport(ns, name string) error {
	ctx, cancel := opContext()
	defer cancel()
	if err := s.Dynamic.Resource(ServiceExportGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("serviceexport %s/%s: %w", ns, name, err)
	}
	return nil
}

// SetImportEndpoints replaces the endpoints that cluster contributes to ServiceImport ns/name: one
// EndpointSlice per address family, <name>-<cluster>-ipv4/-ipv6, labelled as the MCS API says. An
// Endpoint's Hostname goes into the slice as it is (no Pod: the pods live in the other cluster).
func (s *Stack) SetImportEndpoints(ns, name, cluster string, endpoints ...Endpoint) error {
	byFamily, err := endpointsByFamily("import "+ns+"/"+name, endpoints)
	if err != nil {
		return err
	}
	if err := s.EnsureNamespace(ns); err != nil {
		return err
	}
	ctx, cancel := opContext()
	defer cancel()
	return s.writeSlices(ctx, ns, name+"-"+cluster, byFamily, func(es *discoveryv1.EndpointSlice) {
		es.Labels = map[string]string{LabelImportName: name, LabelSourceCluster: cluster, discoveryv1.LabelManagedBy: "realstack.meshdns.io"}
	})
}

// CreateGatewayService creates a LoadBalancer Service ns/name (an east-west gateway) whose status
// lists ingressIPs, as a cloud's load-balancer controller would set them.
func (s *Stack) CreateGatewayService(ns, name string, port int32, ingressIPs ...string) error {
	svc := newService(ns, name)
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	svc.Spec.Ports[0].Name, svc.Spec.Ports[0].Port = "tls", port
	out, err := s.createService(svc)
	if err != nil {
		return err
	}
	for _, ip := range ingressIPs {
		out.Status.LoadBalancer.Ingress = append(out.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	ctx, cancel := opContext()
	defer cancel()
	if _, err := s.Kube.CoreV1().Services(ns).UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("service %s/%s status: %w", ns, name, err)
	}
	return nil
}

// CreateRemoteSecret creates an Istio remote secret in ns (label istio/multiCluster=true) holding the
// kubeconfig of each cluster by id, with annotations (locality, for meshdns).
func (s *Stack) CreateRemoteSecret(ns, name string, kubeconfigs map[string][]byte, annotations map[string]string) error {
	if err := s.EnsureNamespace(ns); err != nil {
		return err
	}
	ctx, cancel := opContext()
	defer cancel()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"istio/multiCluster": "true"}, Annotations: annotations},
		Data:       kubeconfigs,
	}
	if _, err := s.Kube.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeleteSecret deletes Secret ns/name.
func (s *Stack) DeleteSecret(ns, name string) error {
	ctx, cancel := opContext()
	defer cancel()
	if err := s.Kube.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return nil
}
