package realstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
)

// opTimeout bounds each helper's API calls.
const opTimeout = 30 * time.Second

// ServiceEntryGVR is Istio's ServiceEntry resource.
var ServiceEntryGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ServicePort is the single port every Service and ServiceEntry made here has: Istio leaves a headless
// Service without ports out of the name table, and a ServiceEntry needs one to be routable.
const (
	ServicePortName   = "http"
	ServicePort       = 80
	ServiceTargetPort = 8080
)

// Endpoint is one address of a headless Service.
type Endpoint struct {
	IP string // IPv4 or IPv6
	// Hostname, if set, also names the endpoint <Hostname>.<service>.<ns>.svc.cluster.local. istiod
	// takes that name from a Pod (spec.hostname/subdomain), not from the EndpointSlice, so SetEndpoints
	// also creates Pod ns/<Hostname> with this IP and points the endpoint at it.
	Hostname string
	NotReady bool // listed but not ready: Istio leaves it out of the name table
}

// podServiceLabel marks the Pods SetEndpoints made for a Service.
const podServiceLabel = "realstack.meshdns.io/service"

func opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// EnsureNamespace creates the namespace and its `default` ServiceAccount if they are missing (no
// controller-manager runs, so nothing else would create the ServiceAccount). Namespaces cannot be
// deleted for good here: without the namespace controller they stay Terminating.
func (s *Stack) EnsureNamespace(ns string) error {
	ctx, cancel := opContext()
	defer cancel()
	_, err := s.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return s.ensureServiceAccount(ctx, ns, "default")
}

func (s *Stack) ensureServiceAccount(ctx context.Context, ns, name string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	_, err := s.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("serviceaccount %s/%s: %w", ns, name, err)
	}
	return nil
}

// Services made here have no selector: their endpoints are written by SetEndpoints, as for any
// selector-less Service.

// CreateService creates a ClusterIP Service (port http/80) in ns (created if missing). Without
// clusterIPs the API server allocates an IPv4 one from 10.96.0.0/16; give one IPv4 and one IPv6
// (fd00:10:96::/112) address for a dual-stack Service.
func (s *Stack) CreateService(ns, name string, clusterIPs ...string) (*corev1.Service, error) {
	svc := newService(ns, name)
	if len(clusterIPs) > 0 {
		svc.Spec.ClusterIP = clusterIPs[0]
		svc.Spec.ClusterIPs = clusterIPs
		for _, ip := range clusterIPs {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, fmt.Errorf("service %s/%s: %w", ns, name, err)
			}
			f := corev1.IPv4Protocol
			if a.Is6() {
				f = corev1.IPv6Protocol
			}
			svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, f)
		}
		if len(clusterIPs) > 1 {
			p := corev1.IPFamilyPolicyRequireDualStack
			svc.Spec.IPFamilyPolicy = &p
		}
	}
	return s.createService(svc)
}

// CreateHeadlessService creates a headless Service (port http/80) and EndpointSlices holding
// endpoints (see SetEndpoints).
func (s *Stack) CreateHeadlessService(ns, name string, endpoints ...Endpoint) (*corev1.Service, error) {
	svc := newService(ns, name)
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	out, err := s.createService(svc)
	if err != nil {
		return nil, err
	}
	return out, s.SetEndpoints(ns, name, endpoints...)
}

func newService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{
				Name: ServicePortName, Port: ServicePort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(ServiceTargetPort),
			}},
		},
	}
}

func (s *Stack) createService(svc *corev1.Service) (*corev1.Service, error) {
	if err := s.EnsureNamespace(svc.Namespace); err != nil {
		return nil, err
	}
	ctx, cancel := opContext()
	defer cancel()
	out, err := s.Kube.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return out, nil
}

// SetEndpoints replaces the endpoints of Service ns/name, writing one EndpointSlice per address family
// (<name>-ipv4, <name>-ipv6) in place of the endpoint-slice controller, which does not run here.
func (s *Stack) SetEndpoints(ns, name string, endpoints ...Endpoint) error {
	byFamily, err := endpointsByFamily(ns+"/"+name, endpoints)
	if err != nil {
		return err
	}
	ctx, cancel := opContext()
	defer cancel()
	if err := s.syncPods(ctx, ns, name, endpoints, byFamily); err != nil {
		return err
	}
	portName, port, proto := ServicePortName, int32(ServiceTargetPort), corev1.ProtocolTCP
	return s.writeSlices(ctx, ns, name, byFamily, func(es *discoveryv1.EndpointSlice) {
		es.Labels = map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "realstack"}
		es.Ports = []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}}
	})
}

// endpointsByFamily turns endpoints into EndpointSlice endpoints, by address family; what names them
// in errors.
func endpointsByFamily(what string, endpoints []Endpoint) (map[discoveryv1.AddressType][]discoveryv1.Endpoint, error) {
	byFamily := map[discoveryv1.AddressType][]discoveryv1.Endpoint{}
	for _, e := range endpoints {
		a, err := netip.ParseAddr(e.IP)
		if err != nil {
			return nil, fmt.Errorf("endpoints of %s: %w", what, err)
		}
		t := discoveryv1.AddressTypeIPv4
		if a.Is6() {
			t = discoveryv1.AddressTypeIPv6
		}
		ready := !e.NotReady
		ep := discoveryv1.Endpoint{Addresses: []string{a.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
		if e.Hostname != "" {
			h := e.Hostname
			ep.Hostname = &h
		}
		byFamily[t] = append(byFamily[t], ep)
	}
	return byFamily, nil
}

// writeSlices writes one EndpointSlice per family, <prefix>-ipv4 and <prefix>-ipv6, with the
// endpoints of byFamily and what label adds (labels, ports), and deletes that of a family without any.
func (s *Stack) writeSlices(ctx context.Context, ns, prefix string, byFamily map[discoveryv1.AddressType][]discoveryv1.Endpoint, label func(*discoveryv1.EndpointSlice)) error {
	for _, f := range []struct {
		t      discoveryv1.AddressType
		suffix string
	}{{discoveryv1.AddressTypeIPv4, "ipv4"}, {discoveryv1.AddressTypeIPv6, "ipv6"}} {
		t, sliceName := f.t, prefix+"-"+f.suffix
		eps := byFamily[t]
		if len(eps) == 0 {
			err := s.Kube.DiscoveryV1().EndpointSlices(ns).Delete(ctx, sliceName, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("endpointslice %s/%s: %w", ns, sliceName, err)
			}
			continue
		}
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: sliceName, Namespace: ns}, AddressType: t, Endpoints: eps}
		label(es)
		if err := s.putSlice(ctx, es); err != nil {
			return err
		}
	}
	return nil
}

// putSlice creates EndpointSlice es, or updates it in place when it exists: delete and create would
// let Istio push an empty set in between.
func (s *Stack) putSlice(ctx context.Context, es *discoveryv1.EndpointSlice) error {
	slices := s.Kube.DiscoveryV1().EndpointSlices(es.Namespace)
	old, err := slices.Get(ctx, es.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, es, metav1.CreateOptions{})
	case err == nil:
		es.ResourceVersion = old.ResourceVersion
		_, err = slices.Update(ctx, es, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("endpointslice %s/%s: %w", es.Namespace, es.Name, err)
	}
	return nil
}

// syncPods makes one Pod per endpoint with a Hostname (created, or its status updated) and deletes the
// Pods of hostnames no longer listed; it points the endpoints in byFamily at their Pods.
func (s *Stack) syncPods(ctx context.Context, ns, svc string, endpoints []Endpoint, byFamily map[discoveryv1.AddressType][]discoveryv1.Endpoint) error {
	pods := s.Kube.CoreV1().Pods(ns)
	want := map[string]bool{}
	for _, e := range endpoints {
		if e.Hostname == "" {
			continue
		}
		want[e.Hostname] = true
		pod, err := pods.Get(ctx, e.Hostname, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			pod, err = pods.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: e.Hostname, Namespace: ns, Labels: map[string]string{podServiceLabel: svc}},
				Spec: corev1.PodSpec{
					Hostname:   e.Hostname,
					Subdomain:  svc,
					Containers: []corev1.Container{{Name: "app", Image: "realstack.invalid/none"}}, // never runs: no kubelet
				},
			}, metav1.CreateOptions{})
		}
		if err != nil {
			return fmt.Errorf("pod %s/%s: %w", ns, e.Hostname, err)
		}
		// No kubelet either: write the status it would, so istiod sees a running pod with this IP.
		ready := corev1.ConditionTrue
		if e.NotReady {
			ready = corev1.ConditionFalse
		}
		pod.Status = corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      e.IP,
			PodIPs:     []corev1.PodIP{{IP: e.IP}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: metav1.Now()}},
		}
		if pod, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("pod status %s/%s: %w", ns, e.Hostname, err)
		}
		for _, eps := range byFamily {
			for i := range eps {
				if eps[i].Hostname != nil && *eps[i].Hostname == e.Hostname {
					eps[i].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID}
				}
			}
		}
	}
	return s.deletePods(ctx, ns, svc, want)
}

// deletePods deletes the Pods made for Service ns/svc, except those named in keep.
func (s *Stack) deletePods(ctx context.Context, ns, svc string, keep map[string]bool) error {
	pods := s.Kube.CoreV1().Pods(ns)
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: podServiceLabel + "=" + svc})
	if err != nil {
		return fmt.Errorf("pods of %s/%s: %w", ns, svc, err)
	}
	zero := int64(0) // no kubelet to confirm a graceful deletion
	for _, p := range list.Items {
		if keep[p.Name] {
			continue
		}
		if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("pod %s/%s: %w", ns, p.Name, err)
		}
	}
	return nil
}

// DeleteService deletes Service ns/name and the EndpointSlices and Pods SetEndpoints wrote for it.
func (s *Stack) DeleteService(ns, name string) error {
	ctx, cancel := opContext()
	defer cancel()
	if err := s.Kube.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	err := s.Kube.DiscoveryV1().EndpointSlices(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return fmt.Errorf("endpointslices of %s/%s: %w", ns, name, err)
	}
	return s.deletePods(ctx, ns, name, nil)
}

// CreateServiceEntry creates an Istio ServiceEntry (port http/80, MESH_EXTERNAL) in ns (created if
// missing). resolution is NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS; "" means DNS. Without
// addresses and with a resolution other than NONE, istiod auto-allocates one from 240.240.0.0/16
// (written to the ServiceEntry's status).
func (s *Stack) CreateServiceEntry(ns, name string, hosts, addresses []string, resolution string) error {
	if resolution == "" {
		resolution = "DNS"
	}
	spec := map[string]any{
		"hosts":      toAny(hosts),
		"resolution": resolution,
		"location":   "MESH_EXTERNAL",
		"ports":      []any{map[string]any{"number": int64(ServicePort), "name": ServicePortName, "protocol": "HTTP"}},
	}
	if len(addresses) > 0 {
		spec["addresses"] = toAny(addresses)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "ServiceEntry",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
	return s.CreateObject(ServiceEntryGVR, u)
}

// CreateObject creates any namespaced object through the dynamic client (other Istio resources, for
// example), creating its namespace first.
func (s *Stack) CreateObject(gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	if err := s.EnsureNamespace(u.GetNamespace()); err != nil {
		return err
	}
	ctx, cancel := opContext()
	defer cancel()
	if _, err := s.Dynamic.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("%s %s/%s: %w", gvr.Resource, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// DeleteServiceEntry deletes ServiceEntry ns/name.
func (s *Stack) DeleteServiceEntry(ns, name string) error {
	ctx, cancel := opContext()
	defer cancel()
	if err := s.Dynamic.Resource(ServiceEntryGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("serviceentry %s/%s: %w", ns, name, err)
	}
	return nil
}

// IstioToken returns a Kubernetes JWT for ServiceAccount ns/serviceAccount (both created if missing)
// with audience istio-ca, valid for an hour: istiod accepts it on IstiodSecureGRPC as gRPC metadata
// "authorization: Bearer <token>", checked by a TokenReview. The xDS node must then claim the same
// namespace (metadata NAMESPACE) and, if it sets SERVICE_ACCOUNT, the same ServiceAccount.
func (s *Stack) IstioToken(ns, serviceAccount string) (string, error) {
	if err := s.EnsureNamespace(ns); err != nil {
		return "", err
	}
	ctx, cancel := opContext()
	defer cancel()
	if err := s.ensureServiceAccount(ctx, ns, serviceAccount); err != nil {
		return "", err
	}
	exp := int64(3600)
	tr, err := s.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", ns, serviceAccount, err)
	}
	return tr.Status.Token, nil
}

// IstiodRootCert returns the path of a PEM file holding the root certificate of istiod's self-signed
// CA, which signs the certificate istiod serves on IstiodSecureGRPC (for IstiodServerName). istiod
// keeps the CA in Secret istio-system/istio-ca-secret and publishes the root to every namespace as
// ConfigMap istio-ca-root-cert; this waits for that ConfigMap and copies it to <Dir>/root-cert.pem.
func (s *Stack) IstiodRootCert() (string, error) {
	ctx, cancel := opContext()
	defer cancel()
	var last error
	for {
		cm, err := s.Kube.CoreV1().ConfigMaps(IstioNamespace).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err == nil {
			pem := cm.Data["root-cert.pem"]
			if pem == "" {
				err = errors.New("ConfigMap istio-ca-root-cert has no root-cert.pem")
			} else {
				path := filepath.Join(s.Dir, "root-cert.pem")
				return path, os.WriteFile(path, []byte(pem), 0o644)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("istiod root certificate: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// applyCRDs server-side-applies Istio's CRDs (client-side apply would overflow the last-applied
// annotation on the big ones) and those of the Multi-Cluster Services API (ServiceImport,
// ServiceExport, from sigs.k8s.io/mcs-api), and waits until they are all established.
func (s *Stack) applyCRDs(ctx context.Context) error {
	f, err := os.Open(s.paths.IstioCRDs)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, m := range []struct {
		what string
		r    io.Reader
	}{{s.paths.IstioCRDs, f}, {"mcs-api ServiceImport", bytes.NewReader(mcscrd.ServiceImportCRD)}, {"mcs-api ServiceExport", bytes.NewReader(mcscrd.ServiceExportCRD)}} {
		if err := s.applyCRDManifest(ctx, m.what, m.r); err != nil {
			return err
		}
	}
	return nil
}

// applyCRDManifest applies the CRDs in one YAML stream and waits until they are established.
func (s *Stack) applyCRDManifest(ctx context.Context, what string, r io.Reader) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 64<<10)
	var names []string
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if len(obj) == 0 {
			continue // empty document between separators
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if _, err := s.Dynamic.Resource(crdGVR).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "realstack", Force: true}); err != nil {
			return fmt.Errorf("apply %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	if len(names) == 0 {
		return fmt.Errorf("no CRDs in %s", what)
	}
	for _, name := range names {
		for {
			u, err := s.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if established(u) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not established", name)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// CreateExternalNameService creates a Service of type ExternalName pointing at target.
func (s *Stack) CreateExternalNameService(ns, name, target string) (*corev1.Service, error) {
	svc := newService(ns, name)
	svc.Spec.Type, svc.Spec.ExternalName = corev1.ServiceTypeExternalName, target
	return s.createService(svc)
}

// CreatePod creates Pod ns/name on node (no scheduler runs: spec.nodeName is set directly) and writes
// the running, ready status a kubelet would, with ips as its addresses (every family). hostNetwork
// marks it as sharing the node's network.
func (s *Stack) CreatePod(ns, name, node string, hostNetwork bool, ips ...string) error {
	if err := s.EnsureNamespace(ns); err != nil {
		return err
	}
	ctx, cancel := opContext()
	defer cancel()
	pods := s.Kube.CoreV1().Pods(ns)
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:    node,
			HostNetwork: hostNetwork,
			Containers:  []corev1.Container{{Name: "app", Image: "realstack.invalid/none"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}},
	}
	for i, ip := range ips {
		if i == 0 {
			pod.Status.PodIP = ip
		}
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod status %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeletePod deletes Pod ns/name at once.
func (s *Stack) DeletePod(ns, name string) error {
	ctx, cancel := opContext()
	defer cancel()
	zero := int64(0)
	if err := s.Kube.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// ServiceAccountKubeconfig writes a kubeconfig that reaches the API server as ServiceAccount
// ns/name (which must exist), with a token for the API server valid for an hour, and returns its
// path: what a pod running as that ServiceAccount gets, for testing RBAC as it would be used.
func (s *Stack) ServiceAccountKubeconfig(ns, name string) (string, error) {
	ctx, cancel := opContext()
	defer cancel()
	exp := int64(3600)
	tr, err := s.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", ns, name, err)
	}
	admin, err := os.ReadFile(s.Kubeconfig)
	if err != nil {
		return "", err
	}
	// The admin kubeconfig with the ServiceAccount's token in place of the admin's.
	cfg := strings.Replace(string(admin), "token: "+s.AdminToken, "token: "+tr.Status.Token, 1)
	path := filepath.Join(s.Dir, fmt.Sprintf("kubeconfig-%s-%s", ns, name))
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}
