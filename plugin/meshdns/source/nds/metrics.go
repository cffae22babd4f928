package nds

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	connectedGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "nds_connected",
		Help:      "NDS streams to the control plane at address that are up and have delivered a push: 1 while connected, 0 while not.",
	}, []string{"address"})

	pushesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "nds_pushes_total",
		Help:      "NDS pushes received, by result: applied (ACKed) or rejected (NACKed).",
	}, []string{"address", "result"})

	entriesGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "nds_entries",
		Help:      "Hosts in the last NameTable applied from the control plane at address.",
	}, []string{"address"})

	lastPush = &pushClock{}
)

func init() { prometheus.MustRegister(lastPush) }

// pushClock exports the seconds since the last applied push of each address, computed when scraped
// so that a stalled stream shows as a growing number. Sources with the same address (an old and a
// new instance during a reload) share one clock.
type pushClock struct {
	byAddress sync.Map // address -> *atomic.Int64 (unix nanoseconds)
}

var sinceDesc = prometheus.NewDesc(plugin.Namespace+"_meshdns_nds_seconds_since_push",
	"Seconds since the last NDS push applied from the control plane at address.", []string{"address"}, nil)

func (p *pushClock) mark(address string) {
	v, _ := p.byAddress.LoadOrStore(address, new(atomic.Int64))
	v.(*atomic.Int64).Store(time.Now().UnixNano())
}

func (p *pushClock) Describe(ch chan<- *prometheus.Desc) { ch <- sinceDesc }

func (p *pushClock) Collect(ch chan<- prometheus.Metric) {
	p.byAddress.Range(func(k, v any) bool {
		since := time.Since(time.Unix(0, v.(*atomic.Int64).Load())).Seconds()
		ch <- prometheus.MustNewConstMetric(sinceDesc, prometheus.GaugeValue, since, k.(string))
		return true
	})
}
