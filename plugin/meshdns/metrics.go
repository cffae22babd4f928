package meshdns

import (
	"sync"

	"github.com/coredns/coredns/plugin"

	"github.com/meshdns/meshdns/plugin/meshdns/ingress"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	entriesGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "entries",
		Help:      "Hosts in the name table being served.",
	}, []string{"server"})

	tableUpdates = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "table_updates_total",
		Help:      "Updates received from name table sources, by source kind and result (applied or rejected).",
	}, []string{"server", "source", "result"})

	lastUpdate = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "table_update_timestamp_seconds",
		Help:      "When the name table being served was built, in seconds since the Unix epoch.",
	}, []string{"server"})

	batchedDatagrams = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "batched_udp_datagrams_total",
		Help:      "Datagrams read on the batched UDP path, by what became of them: answered (from the table), chain (served by CoreDNS's plugins), dropped (the chain's queue was full).",
	}, []string{"server", "path"})

	answers = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "answers_total",
		Help:      "Questions meshdns handled, by outcome: hit, nodata, nxdomain, fallthrough, notready.",
	}, []string{"server", "outcome"})
)

// outcome is what happened to one question; the values index outcomeNames.
type outcome int

const (
	outcomeHit outcome = iota
	outcomeNoData
	outcomeNXDomain
	outcomeFallthrough
	outcomeNotReady
	numOutcomes
	outcomeNone = numOutcomes // not an outcome: the fast path did not answer
)

var outcomeNames = [numOutcomes]string{"hit", "nodata", "nxdomain", "fallthrough", "notready"}

// answerCounters resolves the answers counters of each server once, so that counting a query is an
// atomic add rather than a label lookup.
type answerCounters struct {
	byServer sync.Map // server -> *[numOutcomes]prometheus.Counter
}

func (a *answerCounters) inc(server string, o outcome) { a.of(server)[o].Inc() }

// of is server's counters, for a caller that counts often to hold on to.
func (a *answerCounters) of(server string) *[numOutcomes]prometheus.Counter {
	v, ok := a.byServer.Load(server)
	if !ok {
		var cs [numOutcomes]prometheus.Counter
		for i := range cs {
			cs[i] = answers.WithLabelValues(server, outcomeNames[i])
		}
		v, _ = a.byServer.LoadOrStore(server, &cs)
	}
	return v.(*[numOutcomes]prometheus.Counter)
}

// ingressCounts counts a batched listener's datagrams, its counters resolved once.
func ingressCounts(server string) ingress.Counts {
	answered := batchedDatagrams.WithLabelValues(server, "answered")
	chain := batchedDatagrams.WithLabelValues(server, "chain")
	dropped := batchedDatagrams.WithLabelValues(server, "dropped")
	add := func(c prometheus.Counter) func(int) { return func(n int) { c.Add(float64(n)) } }
	return ingress.Counts{Answered: add(answered), Chained: add(chain), Dropped: add(dropped)}
}

// batchedLatency is every batched listener's latency at the server (ingress.Latency), as a histogram
// by server. A listener keeps its server's counts across reloads, as CoreDNS's counters go on.
var batchedLatency = &latencyCollector{desc: prometheus.NewDesc(
	prometheus.BuildFQName(plugin.Namespace, "meshdns", "batched_udp_latency_seconds"),
	"Time from the kernel receiving a question to meshdns handing its answer back to the kernel, for the answers of the batched UDP path: "+
		"the server's own part of a query's latency, the wait in the socket included (reported with the prometheus plugin).",
	[]string{"server"}, nil)}

func init() { prometheus.MustRegister(batchedLatency) }

type latencyCollector struct {
	desc     *prometheus.Desc
	byServer sync.Map // server -> *ingress.Latency
}

// of is server's latency counts, made on first use.
func (c *latencyCollector) of(server string) *ingress.Latency {
	v, _ := c.byServer.LoadOrStore(server, &ingress.Latency{})
	return v.(*ingress.Latency)
}

func (c *latencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	bounds := ingress.Bounds()
	c.byServer.Range(func(server, v any) bool {
		cumulative, count, sum := v.(*ingress.Latency).Snapshot()
		buckets := make(map[float64]uint64, len(bounds))
		for i, b := range bounds {
			buckets[b] = cumulative[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.desc, count, sum, buckets, server.(string))
		return true
	})
}
