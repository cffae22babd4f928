package nodecache

import (
	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	repairs = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "repairs_total",
		Help:      "Parts of the node-local setup (the interface, an address, an iptables rule) found missing by the periodic check and put back.",
	})
	setupErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "setup_errors_total",
		Help:      "Periodic checks of the node-local setup that failed.",
	})
	handovers = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "handovers_total",
		Help:      "Shutdowns that left the node-local setup and the queries to another instance serving the same addresses.",
	})
)
