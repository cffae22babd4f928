package meshdns

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/metrics"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary packets to the handler over the example table: whatever parses as a
// DNS message must get a reply or go to the next plugin, never a panic.
func FuzzServeDNS(f *testing.F) {
	// One instance falls through, two answer NXDOMAIN themselves (in the root zone, in cluster.local),
	// so every path gets arbitrary input.
	plugins := []*MeshDNS{
		newTestMeshDNS(f, exampleTable, "", "namespace bookinfo\nfallthrough"),
		newTestMeshDNS(f, exampleTable, "", "namespace bookinfo"),
		newTestMeshDNS(f, exampleTable, "cluster.local", "namespace bookinfo"),
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"reviews.", dns.TypeA}, {"ReViEwS.BookInfo.svc.cluster.local.", dns.TypeAAAA}, {"x.googleapis.example.svc.cluster.local.", dns.TypeA},
		{"12.10.96.10.in-addr.arpa.", dns.TypePTR}, {"a\\.b.cluster.local.", dns.TypeA}, {"example.org.", dns.TypeMX},
	} {
		req := new(dns.Msg)
		req.SetQuestion(q.name, q.qtype)
		req.SetEdns0(1232, false)
		if buf, err := req.Pack(); err == nil {
			f.Add(buf)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		for _, m := range plugins {
			// Through the metrics recorder, as a server with prometheus runs it: both the bytes of
			// the fast path and the messages of the slow path must be valid replies.
			terminal := &wireCapture{}
			rec := metrics.NewRecorder(terminal)
			m.ServeDNS(context.Background(), rec, req)
			if rec.Msg != nil {
				if _, err := rec.Msg.Pack(); err != nil {
					t.Fatalf("reply does not pack: %v\n%v", err, rec.Msg)
				}
			}
			if terminal.wire != nil {
				var reply dns.Msg
				if err := reply.Unpack(terminal.wire); err != nil || reply.Id != req.Id || len(reply.Question) != 1 {
					t.Fatalf("fast reply does not unpack as a reply to %v: %v\n%v", req.Question, err, reply)
				}
				if rec.Rcode != reply.Rcode {
					t.Fatalf("fast reply to %v: rcode %d recorded for the metrics, %d sent", req.Question, rec.Rcode, reply.Rcode)
				}
			}
		}
	})
}
