package test

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// faultProxy is a TCP proxy the test controls, between the resolver and a control plane: it
// forwards, slows every chunk down, cuts every connection (and refuses new ones), or swallows the
// traffic of open connections without a word, as a network partition does.
type faultProxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu    sync.Mutex
	mode  string // "pass", "slow", "cut", "blackhole"
	delay time.Duration
	conns map[net.Conn]bool
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{Addr: ln.Addr().String(), target: target, ln: ln, mode: "pass", conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		p.set("cut", 0)
	})
	go p.serve()
	return p
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		if mode == "cut" {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies src to dst chunk by chunk, as the current mode says.
func (p *faultProxy) pipe(src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			mode, delay := p.mode, p.delay
			p.mu.Unlock()
			switch mode {
			case "slow":
				time.Sleep(delay)
			case "blackhole":
				continue // swallowed: neither end hears of it
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// set changes the mode; "cut" also closes every open connection.
func (p *faultProxy) set(mode string, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.delay = mode, delay
	if mode == "cut" {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// loadGen asks a resolver, at a fixed rate over UDP, for names whose answers it knows, and counts
// what comes back: the right answer, a wrong one, SERVFAIL, another rcode, or nothing (lost).
type loadGen struct {
	addr  string
	names map[string][]string // qname -> the sorted A records it must get

	sent, ok, wrong, servfail, otherRcode, lost atomic.Int64
	mu                                          sync.Mutex
	failures                                    []string
	latencies                                   []time.Duration
	stop                                        chan struct{}
	done                                        sync.WaitGroup
}

// startLoad runs workers, each sending perWorker queries a second, until stopped.
func startLoad(t *testing.T, addr string, names map[string][]string, workers, perWorker int) *loadGen {
	t.Helper()
	g := &loadGen{addr: addr, names: names, stop: make(chan struct{})}
	qnames := make([]string, 0, len(names))
	for n := range names {
		qnames = append(qnames, n)
	}
	slices.Sort(qnames)
	for w := range workers {
		g.done.Add(1)
		go func() {
			defer g.done.Done()
			c := &dns.Client{Timeout: 2 * time.Second}
			tick := time.NewTicker(time.Second / time.Duration(perWorker))
			defer tick.Stop()
			for i := w; ; i++ {
				select {
				case <-g.stop:
					return
				case <-tick.C:
				}
				g.ask(c, qnames[i%len(qnames)])
			}
		}()
	}
	t.Cleanup(g.halt)
	return g
}

func (g *loadGen) ask(c *dns.Client, name string) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	g.sent.Add(1)
	r, rtt, err := c.Exchange(m, g.addr)
	switch {
	case err != nil:
		g.lost.Add(1)
		g.fail(fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), name, err))
		return
	case r.Rcode == dns.RcodeServerFailure:
		g.servfail.Add(1)
		g.fail(fmt.Sprintf("%s %s: SERVFAIL", time.Now().Format("15:04:05.000"), name))
		return
	case r.Rcode != dns.RcodeSuccess:
		g.otherRcode.Add(1)
		g.fail(fmt.Sprintf("%s %s: %s", time.Now().Format("15:04:05.000"), name, dns.RcodeToString[r.Rcode]))
		return
	}
	var got []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			got = append(got, a.A.String())
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, g.names[name]) {
		g.wrong.Add(1)
		g.fail(fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), name, got))
		return
	}
	g.ok.Add(1)
	g.mu.Lock()
	g.latencies = append(g.latencies, rtt)
	g.mu.Unlock()
}

func (g *loadGen) fail(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.failures) < 20 {
		g.failures = append(g.failures, s)
	}
}

func (g *loadGen) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.done.Wait()
}

// report stops the load and says what came back, with latency percentiles of the right answers.
func (g *loadGen) report() string {
	g.halt()
	g.mu.Lock()
	defer g.mu.Unlock()
	slices.Sort(g.latencies)
	pct := func(p float64) time.Duration {
		if len(g.latencies) == 0 {
			return 0
		}
		return g.latencies[min(len(g.latencies)-1, int(p*float64(len(g.latencies))))]
	}
	return fmt.Sprintf("sent %d: right %d, wrong %d, SERVFAIL %d, other rcode %d, lost %d; latency p50 %v p99 %v max %v",
		g.sent.Load(), g.ok.Load(), g.wrong.Load(), g.servfail.Load(), g.otherRcode.Load(), g.lost.Load(),
		pct(0.5), pct(0.99), pct(1))
}

// bad is the number of queries that did not get the right answer.
func (g *loadGen) bad() int64 {
	return g.wrong.Load() + g.servfail.Load() + g.otherRcode.Load() + g.lost.Load()
}
