package meshdns

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
)

// newTestMeshDNS writes table to a file and starts the plugin from a Corefile block whose "file"
// line is prepended to body. The next plugin answers REFUSED, so that falling through shows.
func newTestMeshDNS(t testing.TB, tableYAML, args, body string) *MeshDNS {
	t.Helper()
	path := filepath.Join(t.TempDir(), "table.yaml")
	if err := os.WriteFile(path, []byte(tableYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	c := caddy.NewTestController("dns", "meshdns "+args+" {\n file "+path+" 0\n"+body+"\n}")
	c.ServerBlockKeys = []string{"."}
	m, err := parse(c)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	m.Next = test.NextHandler(dns.RcodeRefused, nil)
	m.store.start("dns://test")
	t.Cleanup(m.store.stop)
	return m
}

// wireCapture is a terminal writer that keeps the bytes written to it, so that replies sent by the
// fast path can be read back.
type wireCapture struct {
	test.ResponseWriter
	wire []byte
}

func (w *wireCapture) Write(b []byte) (int, error) {
	w.wire = append([]byte(nil), b...)
	return len(b), nil
}

func init() { terminalWriters["*meshdns.wireCapture"] = true }

// serve runs one question through m and returns the reply; a fall-through shows as REFUSED.
func serve(t testing.TB, m *MeshDNS, req *dns.Msg) *dns.Msg {
	t.Helper()
	resp, _ := serveVia(t, m, req, &wireCapture{})
	return resp
}

// serveVia is serve through a given terminal writer; fast tells whether the reply came as bytes.
func serveVia(t testing.TB, m *MeshDNS, req *dns.Msg, terminal dns.ResponseWriter) (resp *dns.Msg, fast bool) {
	t.Helper()
	rec := metrics.NewRecorder(terminal) // as the prometheus plugin wraps it
	rcode, err := m.ServeDNS(context.Background(), rec, req)
	if err != nil {
		t.Fatalf("ServeDNS(%s): %v", req.Question[0].Name, err)
	}
	if c, ok := terminal.(*wireCapture); ok && c.wire != nil {
		msg := new(dns.Msg)
		if err := msg.Unpack(c.wire); err != nil {
			t.Fatalf("the fast reply to %s does not unpack: %v", req.Question[0].Name, err)
		}
		return msg, true
	}
	if rec.Msg != nil {
		if _, err := rec.Msg.Pack(); err != nil {
			t.Fatalf("the reply to %s does not pack: %v\n%v", req.Question[0].Name, err, rec.Msg)
		}
	}
	if rec.Msg == nil {
		// The next handler writes nothing for REFUSED; make the fall-through visible.
		r := new(dns.Msg)
		r.SetRcode(req, rcode)
		return r, false
	}
	return rec.Msg, false
}

func runCases(t *testing.T, m *MeshDNS, cases []test.Case) {
	t.Helper()
	for _, tc := range cases {
		t.Run(dns.TypeToString[tc.Qtype]+" "+tc.Qname, func(t *testing.T) {
			resp := serve(t, m, tc.Msg())
			if err := test.CNAMEOrder(resp); err != nil {
				t.Error(err)
			}
			sort.Sort(test.RRSet(tc.Answer)) // SortAndCheck sorts the reply; CNAMEOrder checked it first
			if err := test.SortAndCheck(resp, tc); err != nil {
				t.Errorf("%v\n%v", err, resp)
			}
		})
	}
}
