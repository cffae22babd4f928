package meshdns

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
)

const exampleTable = `
table:
  productpage.bookinfo.svc.cluster.local: {ips: [10.96.10.10], registry: Kubernetes, shortname: productpage, namespace: bookinfo}
  reviews.bookinfo.svc.cluster.local: {ips: [10.96.10.12], registry: Kubernetes, shortname: reviews, namespace: bookinfo}
  reviews.canary.svc.cluster.local: {ips: [10.96.20.12], registry: Kubernetes, shortname: reviews, namespace: canary}
  api.payments.example.com: {ips: [240.240.0.1], registry: External}
  "*.googleapis.example": {ips: [240.240.0.2], registry: External}
  "*.storage.googleapis.example": {ips: [240.240.0.3], registry: External}
  mysql.db.svc.cluster.local: {ips: [10.244.1.5, 10.244.2.7], registry: Kubernetes, shortname: mysql, namespace: db}
  mysql-0.mysql.db.svc.cluster.local: {ips: [10.244.1.5], registry: Kubernetes, shortname: mysql-0.mysql, namespace: db}
  frontend.web.svc.cluster.local: {ips: [10.96.30.1, "fd00::30:1"], registry: Kubernetes, shortname: frontend, namespace: web}
  v6only.web.svc.cluster.local: {ips: ["fd00::30:2"], registry: Kubernetes}
  aliased.web.svc.cluster.local: {ips: [10.96.30.3], registry: Kubernetes, altHosts: [aliased.web.global]}
  legacy.example.com: {ips: [], registry: External}
`

func soa(zone string) dns.RR {
	return test.SOA(zone + " 30 IN SOA ns.dns." + zone + " hostmaster." + zone + " 1 7200 1800 86400 30")
}

func TestAnswerSemantics(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nfallthrough")
	runCases(t, m, []test.Case{
		// A and AAAA from the table.
		{Qname: "productpage.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("productpage.bookinfo.svc.cluster.local. 30 IN A 10.96.10.10")}},
		{Qname: "frontend.web.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA("frontend.web.svc.cluster.local. 30 IN AAAA fd00::30:1")}},
		{Qname: "frontend.web.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("frontend.web.svc.cluster.local. 30 IN A 10.96.30.1")}},
		// Known name without the family: NODATA with the SOA, never NXDOMAIN or forwarded.
		{Qname: "productpage.bookinfo.svc.cluster.local.", Qtype: dns.TypeAAAA, Ns: []dns.RR{soa("cluster.local.")}},
		{Qname: "v6only.web.svc.cluster.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa("cluster.local.")}},
		{Qname: "api.payments.example.com.", Qtype: dns.TypeAAAA, Ns: []dns.RR{soa("api.payments.example.com.")}},
		{Qname: "api.payments.example.com.", Qtype: dns.TypeMX, Ns: []dns.RR{soa("api.payments.example.com.")}},
		{Qname: "reviews.bookinfo.svc.cluster.local.", Qtype: dns.TypeTXT, Ns: []dns.RR{soa("cluster.local.")}},
		{Qname: "legacy.example.com.", Qtype: dns.TypeA, Ns: []dns.RR{soa("legacy.example.com.")}},
		// Short forms of Kubernetes hosts; the bare name only for the client's namespace.
		{Qname: "reviews.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("reviews. 30 IN A 10.96.10.12")}},
		{Qname: "reviews.canary.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("reviews.canary. 30 IN A 10.96.20.12")}},
		{Qname: "reviews.canary.svc.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("reviews.canary.svc. 30 IN A 10.96.20.12")}},
		{Qname: "mysql.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Qname: "mysql-0.mysql.db.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("mysql-0.mysql.db. 30 IN A 10.244.1.5")}},
		{Qname: "reviews.", Qtype: dns.TypeAAAA, Ns: []dns.RR{soa("cluster.local.")}},
		// No short forms for hosts outside the Kubernetes registry; alt hosts answer as given.
		{Qname: "api.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Qname: "aliased.web.global.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("aliased.web.global. 30 IN A 10.96.30.3")}},
		// Short forms are read off the host when the table gives no shortname.
		{Qname: "v6only.web.", Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA("v6only.web. 30 IN AAAA fd00::30:2")}},
		// Every search domain of the client, not only the first: CNAME to the canonical name plus data.
		{Qname: "reviews.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("reviews.bookinfo.svc.cluster.local. 30 IN A 10.96.10.12")}},
		{Qname: "reviews.canary.svc.cluster.local.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.CNAME("reviews.canary.svc.cluster.local.bookinfo.svc.cluster.local. 30 IN CNAME reviews.canary.svc.cluster.local."),
			test.A("reviews.canary.svc.cluster.local. 30 IN A 10.96.20.12")}},
		{Qname: "api.payments.example.com.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.CNAME("api.payments.example.com.svc.cluster.local. 30 IN CNAME api.payments.example.com."),
			test.A("api.payments.example.com. 30 IN A 240.240.0.1")}},
		{Qname: "reviews.canary.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.CNAME("reviews.canary.cluster.local. 30 IN CNAME reviews.canary.svc.cluster.local."),
			test.A("reviews.canary.svc.cluster.local. 30 IN A 10.96.20.12")}},
		{Qname: "api.payments.example.com.cluster.local.", Qtype: dns.TypeAAAA, Answer: []dns.RR{
			test.CNAME("api.payments.example.com.cluster.local. 30 IN CNAME api.payments.example.com.")},
			Ns: []dns.RR{soa("api.payments.example.com.")}},
		{Qname: "www.google.com.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		// Wildcards: the most specific wins and the owner is the question's name.
		{Qname: "www.googleapis.example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("www.googleapis.example. 30 IN A 240.240.0.2")}},
		{Qname: "a.b.googleapis.example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("a.b.googleapis.example. 30 IN A 240.240.0.2")}},
		{Qname: "bucket.storage.googleapis.example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("bucket.storage.googleapis.example. 30 IN A 240.240.0.3")}},
		{Qname: "googleapis.example.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Qname: "www.googleapis.example.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.CNAME("www.googleapis.example.svc.cluster.local. 30 IN CNAME www.googleapis.example."),
			test.A("www.googleapis.example. 30 IN A 240.240.0.2")}},
		{Qname: "www.googleapis.example.", Qtype: dns.TypeAAAA, Ns: []dns.RR{soa("googleapis.example.")}},
		// PTR for table addresses, canonical names only, every owner of a shared address.
		{Qname: "10.10.96.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("10.10.96.10.in-addr.arpa. 30 IN PTR productpage.bookinfo.svc.cluster.local.")}},
		// An endpoint's address points back at its own name, not also at its service's.
		{Qname: "5.1.244.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("5.1.244.10.in-addr.arpa. 30 IN PTR mysql-0.mysql.db.svc.cluster.local.")}},
		{Qname: "1.0.0.0.0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("1.0.0.0.0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 30 IN PTR frontend.web.svc.cluster.local.")}},
		{Qname: "10.10.96.10.in-addr.arpa.", Qtype: dns.TypeA, Ns: []dns.RR{soa("in-addr.arpa.")}},
		{Qname: "99.10.96.10.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeRefused},
		{Qname: "1.1.1.1.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeRefused},
		// Names not in the table fall through.
		{Qname: "example.org.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		{Qname: "bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
	})
}

func TestCaseIsKeptInOwnerNames(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "", "namespace bookinfo")
	runCases(t, m, []test.Case{
		{Qname: "ProductPage.BookInfo.SVC.cluster.LOCAL.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("ProductPage.BookInfo.SVC.cluster.LOCAL. 30 IN A 10.96.10.10")}},
		{Qname: "ReViEwS.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("ReViEwS. 30 IN A 10.96.10.12")}},
		{Qname: "WWW.GoogleAPIs.Example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("WWW.GoogleAPIs.Example. 30 IN A 240.240.0.2")}},
		{Qname: "Www.GoogleAPIs.Example.Svc.Cluster.Local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.CNAME("Www.GoogleAPIs.Example.Svc.Cluster.Local. 30 IN CNAME Www.GoogleAPIs.Example."),
			test.A("Www.GoogleAPIs.Example. 30 IN A 240.240.0.2")}},
	})
}

func TestNoFallthroughGivesNXDOMAIN(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "cluster.local", "ttl 5")
	runCases(t, m, []test.Case{
		{Qname: "nope.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA("cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5")}},
		{Qname: "reviews.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("reviews.bookinfo.svc.cluster.local. 5 IN A 10.96.10.12")}},
		// Outside the plugin's zones: next plugin, whatever the table holds.
		{Qname: "api.payments.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
		// No namespace configured: no bare names.
		{Qname: "reviews.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
	})
	resp := serve(t, m, (&test.Case{Qname: "nope.bookinfo.svc.cluster.local.", Qtype: dns.TypeA}).Msg())
	if soa := resp.Ns[0].(*dns.SOA); soa.Minttl != 5 || soa.Hdr.Ttl != 5 {
		t.Errorf("negative answer SOA carries TTL %d and minimum %d, want the configured 5", soa.Hdr.Ttl, soa.Minttl)
	}
}

func TestRootZoneWithoutFallthrough(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "", "")
	runCases(t, m, []test.Case{
		{Qname: "not.in.the.table.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA(". 30 IN SOA ns.dns. hostmaster. 1 7200 1800 86400 30")}},
		{Qname: "99.99.99.99.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA(". 30 IN SOA ns.dns. hostmaster. 1 7200 1800 86400 30")}},
	})
}

func TestSearchDomainsConfigured(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "", "namespace bookinfo\nsearch corp.example bookinfo.svc.cluster.local\nfallthrough")
	runCases(t, m, []test.Case{
		{Qname: "reviews.corp.example.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.CNAME("reviews.corp.example. 30 IN CNAME reviews.bookinfo.svc.cluster.local."),
			test.A("reviews.bookinfo.svc.cluster.local. 30 IN A 10.96.10.12")}},
		{Qname: "reviews.canary.svc.cluster.local.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.CNAME("reviews.canary.svc.cluster.local.bookinfo.svc.cluster.local. 30 IN CNAME reviews.canary.svc.cluster.local."),
			test.A("reviews.canary.svc.cluster.local. 30 IN A 10.96.20.12")}},
		// svc.cluster.local is no longer a search domain here.
		{Qname: "api.payments.example.com.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
	})
}

func TestMultiAddressAnswersRotate(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "", "")
	firsts := map[string]bool{}
	for range 4 {
		resp := serve(t, m, (&test.Case{Qname: "mysql.db.svc.cluster.local.", Qtype: dns.TypeA}).Msg())
		if len(resp.Answer) != 2 {
			t.Fatalf("want both addresses, got %v", resp.Answer)
		}
		firsts[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) != 2 {
		t.Errorf("first address never changed over 4 answers: %v", firsts)
	}
}

func TestHeaderFlags(t *testing.T) {
	m := newTestMeshDNS(t, exampleTable, "", "")
	req := (&test.Case{Qname: "reviews.bookinfo.svc.cluster.local.", Qtype: dns.TypeA}).Msg()
	req.Id = 4242
	resp := serve(t, m, req)
	if !resp.Authoritative || !resp.Response || resp.Id != 4242 || !resp.RecursionDesired {
		t.Errorf("reply header: %+v", resp.MsgHdr)
	}
	if len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
		t.Errorf("reply question %v, want %v", resp.Question, req.Question)
	}
}

func TestExampleTableServes(t *testing.T) {
	data, err := os.ReadFile("../../example/nametable.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := newTestMeshDNS(t, string(data), "", "namespace bookinfo")
	for _, q := range []string{"productpage.bookinfo.svc.cluster.local.", "reviews.", "ratings.bookinfo-canary.", "api.payments.example.com.",
		"x.googleapis.internal.example.", "mysql-2.mysql.db.svc.cluster.local.", "frontend.web.svc.cluster.local."} {
		resp := serve(t, m, (&test.Case{Qname: q, Qtype: dns.TypeA}).Msg())
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			t.Errorf("%s: %v", q, resp)
		}
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok && !strings.EqualFold(a.Hdr.Name, q) {
				t.Errorf("%s: answer owner %s", q, a.Hdr.Name)
			} else if ok && net.IP(a.A).To4() == nil {
				t.Errorf("%s: bad A %v", q, a)
			}
		}
	}
}
