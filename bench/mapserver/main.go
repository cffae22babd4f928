// Command mapserver is the floor for a Go DNS server in bench/peers.sh: a bare github.com/miekg/dns
// server answering A questions from a map of the NameTable's hosts, with no plugin chain, no metrics and
// no short forms or search domains. Any other question about a known host gets NODATA (NOERROR, no
// answer). Unknown names are forwarded to -upstream with a dns.Client, one exchange per query, as Istio's
// proxy does, and the upstream's reply is passed back; without -upstream they get NXDOMAIN.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"sigs.k8s.io/yaml"
)

// table is the part of a NameTable file (YAML or JSON) that mapserver uses.
type table struct {
	Table map[string]struct {
		IPs []string `json:"ips"`
	} `json:"table"`
}

type server struct {
	a        map[string][]net.IP // lowercased FQDN -> IPv4 addresses (maybe none)
	upstream string
	client   *dns.Client
}

func main() {
	var (
		path     = flag.String("table", "nametable.yaml", "NameTable file, YAML or JSON")
		addr     = flag.String("addr", "127.0.0.1:15354", "address to serve DNS on, UDP and TCP")
		upstream = flag.String("upstream", "", "host:port to forward unknown names to; empty: answer NXDOMAIN")
	)
	flag.Parse()
	s, err := load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mapserver:", err)
		os.Exit(1)
	}
	s.upstream = *upstream
	s.client = &dns.Client{Net: "udp", Timeout: 2 * time.Second}

	errc := make(chan error, 2)
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *addr, Net: network, Handler: s}
		go func() { errc <- srv.ListenAndServe() }()
	}
	fmt.Fprintf(os.Stderr, "mapserver: %d hosts on %s, upstream %q\n", len(s.a), *addr, s.upstream)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "mapserver:", err)
		os.Exit(1)
	case <-sig:
	}
}

func load(path string) (*server, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t table
	if err := yaml.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	s := &server{a: make(map[string][]net.IP, len(t.Table))}
	for host, info := range t.Table {
		var ips []net.IP
		for _, v := range info.IPs {
			if ip := net.ParseIP(v).To4(); ip != nil {
				ips = append(ips, ip)
			}
		}
		s.a[dns.Fqdn(strings.ToLower(host))] = ips
	}
	return s, nil
}

// ServeDNS answers from the map, or forwards.
func (s *server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	ips, ok := s.a[strings.ToLower(q.Name)]
	if !ok {
		s.forward(w, req)
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if q.Qtype == dns.TypeA && q.Qclass == dns.ClassINET {
		for _, ip := range ips {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
				A:   ip,
			})
		}
	}
	w.WriteMsg(m)
}

func (s *server) forward(w dns.ResponseWriter, req *dns.Msg) {
	if s.upstream == "" {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNameError)
		w.WriteMsg(m)
		return
	}
	r, _, err := s.client.Exchange(req, s.upstream)
	if err != nil {
		r = new(dns.Msg)
		r.SetRcode(req, dns.RcodeServerFailure)
	}
	w.WriteMsg(r)
}
