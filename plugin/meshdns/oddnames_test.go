package meshdns

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
)

// The longest names DNS allows: a 63-byte label, and a 253-character name (255 bytes on the wire).
var (
	label63 = strings.Repeat("a", 63)
	name253 = strings.Repeat("b", 61) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("e", 55) + ".example"
)

// TestOddNames asks for names at the edges of what DNS allows, and for names that look like table
// hosts but are not: each gets the right answer or a clean miss, and every reply packs.
func TestOddNames(t *testing.T) {
	if len(name253) != 253 {
		t.Fatalf("name253 is %d characters", len(name253))
	}
	table := fmt.Sprintf(`
table:
  %s.example.com: {ips: [10.0.0.1], registry: External}
  %s: {ips: [10.0.0.2], registry: External}
  xn--bcher-kva.example: {ips: [10.0.0.3], registry: External}
  a.b.example.com: {ips: [10.0.0.4], registry: External}
  "*.wild.example.com": {ips: [10.0.0.5], registry: External}
  "*.deeper.wild.example.com": {ips: [10.0.0.6], registry: External}
`, label63, name253)
	m := newTestMeshDNS(t, table, "", "")
	a := func(name, ip string) []dns.RR { return []dns.RR{test.A(name + " 30 IN A " + ip)} }
	for _, tc := range []struct {
		qname string
		rcode int
		ans   []dns.RR
	}{
		{label63 + ".example.com.", dns.RcodeSuccess, a(label63+".example.com.", "10.0.0.1")},
		{strings.ToUpper(label63) + ".Example.COM.", dns.RcodeSuccess, a(strings.ToUpper(label63)+".Example.COM.", "10.0.0.1")},
		{name253 + ".", dns.RcodeSuccess, a(name253+".", "10.0.0.2")},
		{strings.ToUpper(name253) + ".", dns.RcodeSuccess, a(strings.ToUpper(name253)+".", "10.0.0.2")},
		{"xn--bcher-kva.example.", dns.RcodeSuccess, a("xn--bcher-kva.example.", "10.0.0.3")}, // IDN, as clients send it
		// An escaped dot is part of a label: "a\.b" is one label, not the host a.b.
		{`a\.b.example.com.`, dns.RcodeNameError, nil},
		{`a\046b.example.com.`, dns.RcodeNameError, nil},
		// Other escaped bytes are not letters of a host either.
		{`a\000.b.example.com.`, dns.RcodeNameError, nil},
		{`\001x.wild.example.com.`, dns.RcodeSuccess, a(`\001x.wild.example.com.`, "10.0.0.5")}, // a wildcard takes any label
		{"x.deeper.wild.example.com.", dns.RcodeSuccess, a("x.deeper.wild.example.com.", "10.0.0.6")},
		{"deeper.wild.example.com.", dns.RcodeSuccess, a("deeper.wild.example.com.", "10.0.0.5")},
		{"wild.example.com.", dns.RcodeNameError, nil},
		{".", dns.RcodeNameError, nil},
		{"com.", dns.RcodeNameError, nil},
	} {
		req := new(dns.Msg)
		req.SetQuestion(tc.qname, dns.TypeA)
		resp := serve(t, m, req)
		if resp.Rcode != tc.rcode {
			t.Errorf("%s: rcode %s, want %s", tc.qname, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			continue
		}
		if err := test.Section(test.Case{Qname: tc.qname, Answer: tc.ans}, test.Answer, resp.Answer); err != nil {
			t.Errorf("%s: %v", tc.qname, err)
		}
		if _, err := resp.Pack(); err != nil {
			t.Errorf("%s: the reply does not pack: %v", tc.qname, err)
		}
	}
}

// TestOddTables loads tables with hosts no DNS name can be: each is refused with the host named.
func TestOddTables(t *testing.T) {
	for _, tc := range []struct{ host, want string }{
		{strings.Repeat("a", 64) + ".example.com", "label longer than 63"},
		{name253 + "x", "longer than 253 characters"},
		{"a..b.example.com", "empty label"},
		{"bücher.example", "only letters, digits"},
		{"a b.example.com", "only letters, digits"},
		{"*.*.example.com", "wildcard"},
		{"a.*.example.com", "wildcard"},
		{"*", "wildcard needs a domain"},
	} {
		c := testController(t, fmt.Sprintf("table:\n  %q: {ips: [10.0.0.1]}\n", tc.host))
		if _, err := parse(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("host %q: error %v, want one with %q", tc.host, err, tc.want)
		}
	}
	for _, tc := range []struct{ table, want string }{
		{"table:\n  a.example.com: {ips: [10.0.0.1]}\n  A.example.com.: {ips: [10.0.0.2]}\n", "given twice"},
		{"table:\n  a.example.com: {ips: [10.0.0.300]}\n", "not an IP address"},
		{"table:\n  a.example.com: {ips: [\"10.0.0.0/8\"]}\n", "not an IP address"},
		{"table:\n  a.example.com: {ips: [\"fe80::1%eth0\"]}\n", "not an IP address"},
	} {
		if _, err := parse(testController(t, tc.table)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one with %q", tc.table, err, tc.want)
		}
	}
}

// testController is a meshdns block reading tableYAML from a file.
func testController(t *testing.T, tableYAML string) *caddy.Controller {
	t.Helper()
	path := filepath.Join(t.TempDir(), "table.yaml")
	if err := os.WriteFile(path, []byte(tableYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	c := caddy.NewTestController("dns", "meshdns {\n file "+path+"\n}")
	c.ServerBlockKeys = []string{"."}
	return c
}
