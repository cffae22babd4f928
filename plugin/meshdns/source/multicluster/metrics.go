package multicluster

import (
	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
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
