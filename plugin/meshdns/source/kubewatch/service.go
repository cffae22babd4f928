package kubewatch

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Service is what the informers keep of a corev1.Service (592 bytes and its spec's slices and maps):
// its names and addresses, and what the sources of the process said they read (ServiceNeeds).
type Service struct {
	Meta
	Type corev1.ServiceType
	// ClusterIPs are the Service's virtual IPs, as the API gives them: ["None"] when it is headless.
	ClusterIPs               []string
	ExternalName             string
	PublishNotReadyAddresses bool
	// GatewayIPs are the load balancer's ingress IPs, then the external IPs (ServiceNeeds.Gateway).
	GatewayIPs []string
}

// Headless reports whether the Service has no virtual IP: its name answers with its endpoints.
func (s *Service) Headless() bool {
	return len(s.ClusterIPs) > 0 && s.ClusterIPs[0] == corev1.ClusterIPNone
}

// ServiceNeeds is what a source reads of Services beyond their names and addresses, which
// TrimService always keeps.
type ServiceNeeds struct {
	Annotations []string // the annotations read (exportTo)
	Labels      bool     // every label (an export label, chosen in the Corefile)
	Gateway     bool     // external IPs and the load balancer's status (east-west gateways)
}

func (n ServiceNeeds) union(o ServiceNeeds) ServiceNeeds {
	for _, a := range o.Annotations {
		if !slices.Contains(n.Annotations, a) {
			n.Annotations = append(slices.Clip(n.Annotations), a)
		}
	}
	n.Labels = n.Labels || o.Labels
	n.Gateway = n.Gateway || o.Gateway
	return n
}

// NewService is the Service kept of svc when the sources read needs.
func NewService(svc *corev1.Service, needs ServiceNeeds) *Service {
	out := &Service{
		Meta:                     MetaOf(&svc.ObjectMeta),
		Type:                     svc.Spec.Type,
		ClusterIPs:               svc.Spec.ClusterIPs,
		ExternalName:             svc.Spec.ExternalName,
		PublishNotReadyAddresses: svc.Spec.PublishNotReadyAddresses,
	}
	if len(out.ClusterIPs) == 0 && svc.Spec.ClusterIP != "" {
		out.ClusterIPs = []string{svc.Spec.ClusterIP} // written before clusterIPs was
	}
	out.Annotations = keepOnly(svc.Annotations, needs.Annotations)
	if needs.Labels {
		out.Labels = svc.Labels
	}
	if needs.Gateway {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				out.GatewayIPs = append(out.GatewayIPs, in.IP)
			}
		}
		out.GatewayIPs = append(out.GatewayIPs, svc.Spec.ExternalIPs...)
	}
	return out
}

// TrimService is the informers' transform to a Service kept for needs.
func TrimService(needs ServiceNeeds) cache.TransformFunc {
	return func(obj any) (any, error) {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			return obj, nil // a tombstone (DeletedFinalStateUnknown), or kept already
		}
		return NewService(svc, needs), nil
	}
}

// keepOnly returns the entries of all named in keys, or nil when none is there.
func keepOnly(all map[string]string, keys []string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := all[k]; ok {
			if out == nil {
				out = make(map[string]string, 1)
			}
			out[k] = v
		}
	}
	return out
}
