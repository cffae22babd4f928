package ingress

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// answerWith is a handler answering every A question with addr.
func answerWith(addr string) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 30 IN A " + addr)
		m.Answer = []dns.RR{rr}
		w.WriteMsg(m)
	}
}

// respondFast answers names under fast. with 10.0.0.1 from bytes, and declines the rest.
func respondFast(out, query []byte, _ netip.AddrPort) ([]byte, bool) {
	var r dns.Msg
	if r.Unpack(query) != nil || len(r.Question) != 1 || !strings.HasPrefix(r.Question[0].Name, "fast.") {
		return out, false
	}
	m := new(dns.Msg)
	m.SetReply(&r)
	rr, _ := dns.NewRR(r.Question[0].Name + " 30 IN A 10.0.0.1")
	m.Answer = []dns.RR{rr}
	b, err := m.PackBuffer(out)
	return b, err == nil
}

// coreDNSSocket stands in for CoreDNS's own listener: a plain SO_REUSEPORT socket on addr (port 0
// picks one) served by a dns.Server answering 10.0.0.2.
func coreDNSSocket(t *testing.T, addr string) string {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: answerWith("10.0.0.2")}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

type counted struct{ answered, chained, dropped atomic.Int64 }

func (c *counted) counts() Counts {
	return Counts{
		Answered: func(n int) { c.answered.Add(int64(n)) },
		Chained:  func(n int) { c.chained.Add(int64(n)) },
		Dropped:  func(n int) { c.dropped.Add(int64(n)) },
	}
}

func ask(t *testing.T, addr, name string) string {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("%s: answer %v", name, r.Answer)
	}
	return r.Answer[0].(*dns.A).A.String()
}

// listen starts an ingress on addr, closed when the test ends (Close may also be called before).
func listen(t *testing.T, addr string, h dns.Handler, counts Counts) *Ingress {
	t.Helper()
	g, err := Listen(addr, respondFast, h, nil, counts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// askConnected asks addr for name's A record from a connected socket, which takes replies only from
// addr, and returns the reply and the client's address.
func askConnected(t *testing.T, addr, name string) (*dns.Msg, netip.AddrPort) {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Conn{Conn: conn}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadMsg()
	if err != nil {
		t.Fatalf("%s from %s: %v (a reply from another address is not taken)", name, addr, err)
	}
	return r, conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestIngressTakesTheAddressAndGivesItBack(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			addr := coreDNSSocket(t, host+":0")
			if got := ask(t, addr, "fast.example."); got != "10.0.0.2" {
				t.Fatalf("before the ingress: %s, want CoreDNS's socket (10.0.0.2)", got)
			}
			var c counted
			g := listen(t, addr, answerWith("10.0.0.3"), c.counts())
			// Every query, from new source ports and whichever CPU sends it, comes to the ingress.
			for i := range 50 {
				if got := ask(t, addr, "fast.example."); got != "10.0.0.1" {
					t.Fatalf("query %d: %s, want the ingress's answer 10.0.0.1", i, got)
				}
				if got := ask(t, addr, "slow.example."); got != "10.0.0.3" {
					t.Fatalf("query %d: %s, want the chain's answer 10.0.0.3", i, got)
				}
			}
			if c.answered.Load() != 50 || c.chained.Load() != 50 || c.dropped.Load() != 0 {
				t.Errorf("counts: answered %d chained %d dropped %d, want 50 50 0", c.answered.Load(), c.chained.Load(), c.dropped.Load())
			}
			g.Close()
			if got := ask(t, addr, "fast.example."); got != "10.0.0.2" {
				t.Fatalf("after Close: %s, want CoreDNS's socket again", got)
			}
		})
	}
}

// The chain's client sees the address the query came from, and replies leave from the address it
// was sent to.
func TestIngressChainSeesTheClient(t *testing.T) {
	addr := coreDNSSocket(t, "127.0.0.1:0")
	var seen atomic.Value
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		seen.Store(w.RemoteAddr().(*net.UDPAddr).AddrPort())
		answerWith("10.0.0.3")(w, r)
	})
	listen(t, addr, h, (&counted{}).counts())
	_, client := askConnected(t, addr, "slow.example.")
	if got, want := seen.Load(), client; got != want {
		t.Errorf("the chain saw %v, want the client %v", got, want)
	}
}

// Garbage is the chain's to refuse (miekg/dns drops what does not parse); the ingress goes on.
func TestIngressSurvivesGarbage(t *testing.T) {
	addr := coreDNSSocket(t, "127.0.0.1:0")
	listen(t, addr, answerWith("10.0.0.3"), (&counted{}).counts())
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{{}, {1}, make([]byte, 11), make([]byte, 12), make([]byte, 5000), []byte("\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01")} {
		conn.Write(junk)
	}
	conn.Close()
	if got := ask(t, addr, "fast.example."); got != "10.0.0.1" {
		t.Fatalf("after garbage: %s", got)
	}
	if got := ask(t, addr, "slow.example."); got != "10.0.0.3" {
		t.Fatalf("after garbage: %s", got)
	}
}

// Closing while clients ask loses nothing: what was steered to the ingress is answered, from bytes or
// by the chain, and the rest goes to CoreDNS's socket.
func TestIngressCloseUnderLoadLosesNothing(t *testing.T) {
	for _, name := range []string{"fast.example.", "slow.example."} {
		t.Run(name, func(t *testing.T) { closeUnderLoad(t, name) })
	}
}

func closeUnderLoad(t *testing.T, name string) {
	addr := coreDNSSocket(t, "127.0.0.1:0")
	g := listen(t, addr, answerWith("10.0.0.3"), (&counted{}).counts())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var asked, lost atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Timeout: time.Second}
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			for {
				select {
				case <-stop:
					return
				default:
				}
				asked.Add(1)
				if _, _, err := c.Exchange(m, addr); err != nil {
					lost.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	g.Close()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if lost.Load() != 0 {
		t.Errorf("%d of %d queries lost while the ingress closed", lost.Load(), asked.Load())
	}
	t.Logf("%d queries, none lost", asked.Load())
}

func TestListenRefusesNonAddresses(t *testing.T) {
	for _, addr := range []string{"localhost:53", "127.0.0.1", "[::1]", "example.org:53"} {
		if _, err := Listen(addr, respondFast, answerWith("10.0.0.3"), nil, (&counted{}).counts()); err == nil {
			t.Errorf("%s: no error", addr)
		}
	}
}

// On a wildcard listener (Go's dual-stack ":port", as CoreDNS listens without bind) every reply, from
// bytes or from the chain, leaves from the address its query was sent to: a connected client takes
// replies from that address only.
func TestIngressOnAWildcardAnswersFromTheAddressAsked(t *testing.T) {
	addr := coreDNSSocket(t, ":0")
	_, port, _ := net.SplitHostPort(addr)
	var c counted
	g := listen(t, ":"+port, answerWith("10.0.0.3"), c.counts())
	for _, host := range []string{"127.0.0.1", "127.0.0.2", "::1"} {
		for name, want := range map[string]string{"fast.example.": "10.0.0.1", "slow.example.": "10.0.0.3"} {
			r, _ := askConnected(t, net.JoinHostPort(host, port), name)
			if got := r.Answer[0].(*dns.A).A.String(); got != want {
				t.Errorf("%s %s: %s, want %s", host, name, got, want)
			}
		}
	}
	if c.answered.Load() != 3 || c.chained.Load() != 3 {
		t.Errorf("answered %d, chained %d: want 3 and 3, all through the ingress", c.answered.Load(), c.chained.Load())
	}
	g.queue.mu.Lock()
	left := len(g.queue.sources)
	g.queue.mu.Unlock()
	if left != 0 {
		t.Errorf("%d reply sources left behind", left)
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-1": 2, "0-3,8": 9, "0,2-5": 6} {
		if got, ok := parseCPUList(in); !ok || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "x", "0-", "-1", "0-99999"} {
		if _, ok := parseCPUList(in); ok {
			t.Errorf("%q: parsed", in)
		}
	}
}
