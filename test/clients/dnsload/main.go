// Command dnsload asks a DNS server from inside a pod and says how it went, in one line:
//
//	dnsload -server 169.254.20.10:53 -duration 5s -concurrency 8 NAME...       # capacity
//	dnsload -server 169.254.20.10:53 -duration 60s -rate 500 NAME...           # failures at a rate
//
// With -rate 0 it keeps -concurrency queries in flight on as many sockets and reports the queries
// per second answered. With -rate R it sends R queries a second open-loop, each from a fresh socket
// as a stub resolver does (a send error counts), waits up to -timeout, and counts every query that
// got no answer or not NOERROR with an answer as failed, with the longest run of failures.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

func main() {
	server := flag.String("server", "169.254.20.10:53", "DNS server, host:port")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	concurrency := flag.Int("concurrency", 8, "queries in flight (with -rate 0)")
	rate := flag.Int("rate", 0, "queries a second, open-loop; 0 for as many as -concurrency allows")
	timeout := flag.Duration("timeout", 2*time.Second, "wait for each answer")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 {
		fmt.Fprintln(os.Stderr, "dnsload: give at least one name")
		os.Exit(2)
	}
	for i, n := range names {
		names[i] = dns.Fqdn(n)
	}
	if *rate > 0 {
		atRate(*server, names, *rate, *duration, *timeout)
		return
	}
	capacity(*server, names, *concurrency, *duration, *timeout)
}

func query(name string, id uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	b, _ := m.Pack()
	return b
}

func good(b []byte, id uint16) bool {
	r := new(dns.Msg)
	return r.Unpack(b) == nil && r.Id == id && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0
}

func capacity(server string, names []string, concurrency int, duration, timeout time.Duration) {
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(duration)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", server)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			buf := make([]byte, 1500)
			for i := w; time.Now().Before(end); i += concurrency {
				id := uint16(i)
				c.SetDeadline(time.Now().Add(timeout))
				if _, err := c.Write(query(names[i%len(names)], id)); err != nil {
					failed.Add(1)
					continue
				}
				n, err := c.Read(buf)
				if err != nil || !good(buf[:n], id) {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("qps %.0f answered %d failed %d\n", float64(ok.Load())/duration.Seconds(), ok.Load(), failed.Load())
}

func atRate(server string, names []string, rate int, duration, timeout time.Duration) {
	type result struct {
		sent time.Time
		ok   bool
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	record := func(r result) { mu.Lock(); results = append(results, r); mu.Unlock() }
	begin := time.Now()
	tick := time.NewTicker(time.Millisecond)
	for i := 0; time.Since(begin) < duration; <-tick.C {
		for due := int(time.Since(begin).Seconds() * float64(rate)); i < due; i++ {
			sent, id, name := time.Now(), uint16(i), names[i%len(names)]
			c, err := net.Dial("udp", server)
			if err == nil {
				_, err = c.Write(query(name, id))
			}
			if err != nil {
				if c != nil {
					c.Close()
				}
				record(result{sent: sent})
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetReadDeadline(sent.Add(timeout))
				buf := make([]byte, 1500)
				n, err := c.Read(buf)
				record(result{sent: sent, ok: err == nil && good(buf[:n], id)})
			}()
		}
	}
	tick.Stop()
	wg.Wait()
	failed := 0
	var outage time.Duration
	var first time.Time
	// Results arrive out of order; the longest outage is over send times.
	slices.SortFunc(results, func(a, b result) int { return a.sent.Compare(b.sent) })
	for _, r := range results {
		switch {
		case r.ok:
			first = time.Time{}
		case first.IsZero():
			failed++
			first = r.sent
		default:
			failed++
			outage = max(outage, r.sent.Sub(first))
		}
	}
	fmt.Printf("sent %d failed %d outage %v\n", len(results), failed, outage.Round(time.Millisecond))
}
