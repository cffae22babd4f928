package nds

import (
	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The stream metrics (nds_connected, nds_pushes_total, nds_seconds_since_push) are the xds client's;
// the names below are the ones tests read.
var (
	pushesTotal    = metrics.Pushes
	connectedGauge = metrics.Connected

	entriesGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "nds_entries",
		Help:      "Hosts in the last NameTable applied from the control plane at address.",
	}, []string{"address"})
)

// subscriptionsGauge counts the namespaces subscribed for, per namespace ("namespaces" in the block).
var subscriptionsGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: plugin.Namespace,
	Subsystem: "meshdns",
	Name:      "nds_namespace_subscriptions",
	Help:      "NameTable subscriptions open to the control plane at address, one for each namespace subscribed for.",
}, []string{"address"})
