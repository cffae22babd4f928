package meshdns

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
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

// serve runs one question through m and returns the reply; a fall-through shows as REFUSED.
func serve(t testing.TB, m *MeshDNS, req *dns.Msg) *dns.Msg {
	t.Helper()
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, err := m.ServeDNS(context.Background(), rec, req)
	if err != nil {
		t.Fatalf("ServeDNS(%s): %v", req.Question[0].Name, err)
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
		return r
	}
	return rec.Msg
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
