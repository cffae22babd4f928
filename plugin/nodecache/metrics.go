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
	addressConflicts = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "address_conflicts_total",
		Help:      "Times a DNS address was found held by something that does not share it, while the start waited for it.",
	})
	handovers = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "handovers_total",
		Help:      "Shutdowns that left the node-local setup and the queries to another instance serving the same addresses.",
	})
)
