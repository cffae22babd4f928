package realstack

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// StartControllers starts kube-controller-manager (every default controller: Deployment,
// ReplicaSet, DaemonSet, EndpointSlice, ServiceAccount and its tokens, namespace, garbage collector,
// node lifecycle...) and kube-scheduler against the stack, on the host, and returns when the
// controller manager works (it published kube-root-ca.crt). Without it, as in most tests, nothing
// acts on the objects tests write. It does nothing when they already run; they stop with the stack.
func (s *Stack) StartControllers() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kcm != nil && !s.kcm.exited() && s.sched != nil && !s.sched.exited() {
		return nil
	}
	s.kcm.kill()
	s.sched.kill()
	paths, err := NodeBinaries()
	if err != nil {
		return err
	}
	certDir := filepath.Join(s.Dir, "apiserver")
	ca, err := writeCA(certDir)
	if err != nil {
		return err
	}
	s.kcm, err = s.spawn("kube-controller-manager", paths.ControllerManager, s.Dir, minimalEnv(s.Dir),
		"--kubeconfig="+s.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0", // no metrics or health endpoint wanted: readiness is seen through the API
		"--service-account-private-key-file="+filepath.Join(certDir, "sa.key"),
		"--root-ca-file="+ca, // what pods get as kube-root-ca.crt
		"--use-service-account-credentials=false",
		"--cluster-name=realstack",
		"--flex-volume-plugin-dir="+filepath.Join(s.Dir, "flexvolume"), // else it makes /usr/libexec/kubernetes
		"--controllers=*")
	if err != nil {
		return err
	}
	s.sched, err = s.spawn("kube-scheduler", paths.Scheduler, s.Dir, minimalEnv(s.Dir),
		"--kubeconfig="+s.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kcm, sched := s.kcm, s.sched
	return waitFor(ctx, kcm, func() error {
		if sched.exited() {
			return fmt.Errorf("kube-scheduler exited: %v (see kube-scheduler.log)", sched.err)
		}
		_, err := s.Kube.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
}

// SetAPIServerEndpoint points the kubernetes Service (default/kubernetes, what in-cluster clients
// reach as 10.96.0.1:443) at ip:port: the API server runs with --endpoint-reconciler-type=none and
// on loopback, which no pod can reach, so a node gives an address of its own that forwards to it.
func (s *Stack) SetAPIServerEndpoint(ip string, port int) error {
	ctx, cancel := opContext()
	defer cancel()
	const ns, name = "default", "kubernetes"
	if _, err := s.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{
				Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(port)),
			}}},
		}
		if _, err := s.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("service %s/%s: %w", ns, name, err)
		}
	} else if err != nil {
		return fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	// An EndpointSlice only: v1 Endpoints are deprecated, and every client here reads slices.
	p := int32(port)
	portName, proto, ready := "https", corev1.ProtocolTCP, true
	return s.putSlice(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "realstack",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &p, Protocol: &proto}},
	})
}

// writeCA writes the CA certificate of the API server's self-signed serving certificate (apiserver.crt
// holds both) to ca.crt and returns its path. The controller manager publishes its --root-ca-file as
// ClusterTrustBundles too, which refuse a certificate that is not a CA.
func writeCA(certDir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return "", err
	}
	var out []byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && c.IsCA {
			out = append(out, pem.EncodeToMemory(b)...)
		}
	}
	if len(out) == 0 {
		return "", fmt.Errorf("no CA certificate in %s", filepath.Join(certDir, "apiserver.crt"))
	}
	path := filepath.Join(certDir, "ca.crt")
	return path, os.WriteFile(path, out, 0o644)
}
