package meshdns

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// packingWriter stands in for the server's writer: it packs what WriteMsg gets, as the server does
// before sending, and takes bytes as they are.
type packingWriter struct{ test.ResponseWriter }

func (w *packingWriter) WriteMsg(m *dns.Msg) error {
	_, err := m.Pack()
	return err
}

func (w *packingWriter) Write(b []byte) (int, error) { return len(b), nil }

// slowPackingWriter is the same writer under a name the fast path does not trust.
type slowPackingWriter struct{ packingWriter }

func init() { terminalWriters["*meshdns.packingWriter"] = true }

// BenchmarkServeDNS is a hit through the writers a CoreDNS server with the prometheus plugin puts in
// front of the plugin (metrics recorder, scrubber, the server's packing writer), by the fast path
// and by the dns.Msg path.
func BenchmarkServeDNS(b *testing.B) {
	m := newTestMeshDNS(b, exampleTable, "", "namespace bookinfo\nfallthrough")
	for _, tc := range []struct {
		name     string
		terminal func() dns.ResponseWriter
	}{
		{"fast", func() dns.ResponseWriter { return &packingWriter{} }},
		{"msg", func() dns.ResponseWriter { return &slowPackingWriter{} }},
	} {
		for _, q := range []struct{ kind, name string }{
			{"hit", "productpage.bookinfo.svc.cluster.local."},
			{"headless3", "mysql.db.svc.cluster.local."},
		} {
			b.Run(tc.name+"/"+q.kind, func(b *testing.B) {
				req := new(dns.Msg)
				req.SetQuestion(q.name, dns.TypeA)
				req.SetEdns0(1232, false)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					w := metrics.NewRecorder(request.NewScrubWriter(req, tc.terminal()))
					if _, err := m.ServeDNS(ctx, w, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
