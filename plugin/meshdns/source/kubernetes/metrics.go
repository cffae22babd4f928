package kubernetes

import (
	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	connectedGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "kubernetes_connected",
		Help:      "1 while the Kubernetes API server of cluster answers, 0 while it does not (the last data is served meanwhile); during a reload the old and the new instance each count.",
	}, []string{"cluster"})

	eventsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "kubernetes_events_total",
		Help:      "Changes seen by the Kubernetes source, by resource (services, endpointslices, serviceentries, pods).",
	}, []string{"cluster", "resource"})

	invalidTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "kubernetes_invalid_objects_total",
		Help:      "Objects (or hosts of them) left out of the name table because they name no valid host, by resource.",
	}, []string{"cluster", "resource"})

	clientsGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "kubernetes_client_addresses",
		Help:      "Pod addresses whose namespace the Kubernetes source knows, for client views.",
	}, []string{"cluster"})
)

var (
	clusterAvailable = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "multicluster_cluster_available",
		Help:      "1 while a cluster may answer mesh names, 0 while it is withdrawn (gateway probe failed, API server lost past the lease, or in its hold-down); during a reload the old and the new instance each count.",
	}, []string{"cluster"})

	withdrawalsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "multicluster_withdrawals_total",
		Help:      "Times a cluster was withdrawn from mesh answers, by reason (gateway: its gateway failed its probe, api: its API server was lost past the lease), and times one of several gateway addresses was (gateway_address).",
	}, []string{"cluster", "reason"})

	meshServices = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "multicluster_services",
		Help:      "Exported services answered under the mesh suffixes, by the tier that answers them (this cluster, same network, same zone, same region, another region, none).",
	}, []string{"tier"})
)
