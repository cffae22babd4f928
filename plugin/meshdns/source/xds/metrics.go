package xds

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the stream metrics of one kind of source, coredns_meshdns_<kind>_*, by control plane
// address. Make them once per kind, at package level: they register with Prometheus.
type Metrics struct {
	// Connected counts the streams to address that are up and have delivered a push.
	Connected *prometheus.GaugeVec
	// Pushes counts the pushes received, by result: applied (ACKed) or rejected (NACKed).
	Pushes *prometheus.CounterVec
	clock  *pushClock
}

// NewMetrics registers the metrics of kind (the metric name's word, "nds"); what names the stream in
// their help ("NDS").
func NewMetrics(kind, what string) *Metrics {
	m := &Metrics{
		Connected: promauto.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: plugin.Namespace,
			Subsystem: "meshdns",
			Name:      kind + "_connected",
			Help:      what + " streams to the control plane at address that are up and have delivered a push: 1 while connected, 0 while not.",
		}, []string{"address"}),
		Pushes: promauto.NewCounterVec(prometheus.CounterOpts{
			Namespace: plugin.Namespace,
			Subsystem: "meshdns",
			Name:      kind + "_pushes_total",
			Help:      what + " pushes received, by result: applied (ACKed) or rejected (NACKed).",
		}, []string{"address", "result"}),
		clock: &pushClock{desc: prometheus.NewDesc(plugin.Namespace+"_meshdns_"+kind+"_seconds_since_push",
			"Seconds since the last "+what+" push applied from the control plane at address.", []string{"address"}, nil)},
	}
	prometheus.MustRegister(m.clock)
	return m
}

// pushClock exports the seconds since the last applied push of each address, computed when scraped
// so that a stalled stream shows as a growing number. Sources with the same address (an old and a
// new instance during a reload) share one clock.
type pushClock struct {
	desc      *prometheus.Desc
	byAddress sync.Map // address -> *atomic.Int64 (unix nanoseconds)
}

func (p *pushClock) mark(address string) {
	v, _ := p.byAddress.LoadOrStore(address, new(atomic.Int64))
	v.(*atomic.Int64).Store(time.Now().UnixNano())
}

func (p *pushClock) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p *pushClock) Collect(ch chan<- prometheus.Metric) {
	p.byAddress.Range(func(k, v any) bool {
		since := time.Since(time.Unix(0, v.(*atomic.Int64).Load())).Seconds()
		ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, since, k.(string))
		return true
	})
}
