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
