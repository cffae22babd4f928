// Package ingress is a batched UDP front for one address that a CoreDNS server listens on.
//
// CoreDNS (through miekg/dns) reads each datagram with its own recvmsg, starts a goroutine for it,
// unpacks it into a dns.Msg and writes the reply with its own sendmsg: past a plugin that answers from
// prepacked bytes, those are where the time goes. An Ingress joins the address's SO_REUSEPORT group
// with one socket per CPU, each marked with SO_INCOMING_CPU, which Linux (6.1 and later) prefers over
// the group's other sockets for datagrams processed on that CPU: the datagrams come to it rather
// than to CoreDNS's own socket, without a BPF program and whatever order the sockets joined in. Each
// socket's loop reads them in batches (recvmmsg), asks Respond for an answer from bytes, writes the
// answers in batches (sendmmsg), and hands every datagram Respond declines to a dns.Server of its
// own whose handler is the CoreDNS server's: the chain sees it exactly as it would have.
//
// Closing takes the sockets out of the preference first and drains them, so a reload or a shutdown
// loses no datagram already steered here; from then on CoreDNS's socket (or a newer Ingress) gets them.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Respond appends to out the reply to query, sent by client, and reports whether it did; it must not
// keep query or out. A false sends the query through the CoreDNS chain instead.
type Respond func(out, query []byte, client netip.AddrPort) ([]byte, bool)

// Counts are what an Ingress did with the datagrams it read, reported by the batch.
type Counts struct {
	Answered func(n int) // Respond answered them
	Chained  func(n int) // handed to the chain
	Dropped  func(n int) // not served: the chain's queue was full
	Latency  *Latency    // the answered ones' latency at the server; nil: not measured
}

const (
	batchSize     = 32      // datagrams per recvmmsg and sendmmsg
	readSize      = 2048    // bytes read per datagram; the chain's server reads 512 of it, as CoreDNS's does
	replySize     = 512     // bytes first held per reply; a larger one grows its buffer
	chainQueue    = 1024    // datagrams waiting for the chain; past this they are dropped, as a full socket would
	maxSockets    = 256     // per address, one per CPU: past this, CPUs share them by the kernel's hash
	receiveBuffer = 4 << 20 // bytes queued per socket: thousands of queries, some 50 ms at 100k q/s
	oobSize       = 128     // control message bytes read per datagram: its destination address
	drainQuiet    = 20 * time.Millisecond
	drainMax      = time.Second
	chainGrace    = 5 * time.Second // in-flight chain queries (a forward to a slow upstream) finish within this
)

// Ingress serves one address: a specific one, whose replies leave from it, or a wildcard, whose
// replies leave from the address each query came to (IP_PKTINFO / IPV6_PKTINFO), as miekg/dns does.
type Ingress struct {
	addr    *net.UDPAddr // the address bound; on a wildcard, its port with the family's loopback
	wild    bool
	conns   []*net.UDPConn
	respond Respond
	counts  Counts
	chain   *dns.Server
	queue   *chainConn

	closing atomic.Bool
	loops   sync.WaitGroup
	served  chan error
	once    sync.Once
}

// Listen joins the SO_REUSEPORT group of addr (host:port as CoreDNS listens on it, the host empty or
// unspecified for every address) with one socket per CPU and starts serving: Respond first, the rest
// through handler as a dns.Server with tsig's secrets would serve it.
func Listen(addr string, respond Respond, handler dns.Handler, tsig map[string]string, counts Counts) (*Ingress, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("ingress: %q is not an address and port: %w", addr, err)
	}
	if host == "" {
		host = "::" // Go's wildcard listener: one socket for both families
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("ingress: %q is not an IP address and port: %w", addr, err)
	}
	g := &Ingress{addr: net.UDPAddrFromAddrPort(ap), wild: ap.Addr().IsUnspecified(), respond: respond, counts: counts, served: make(chan error, 1)}
	if g.wild { // withdraw connects a socket to itself: to loopback on a wildcard
		g.addr.IP = net.IPv6loopback
		if ap.Addr().Is4() {
			g.addr.IP = net.IPv4(127, 0, 0, 1)
		}
	}
	for cpu := range min(possibleCPUs(), maxSockets) {
		c, err := listenSteered(addr, cpu, counts.Latency != nil)
		if err == nil && g.wild {
			err = wantDestinations(c)
		}
		if err != nil {
			g.closeConns()
			return nil, err
		}
		g.conns = append(g.conns, c)
	}
	g.queue = &chainConn{local: g.conns[0].LocalAddr(), out: g.conns[0], in: make(chan datagram, chainQueue),
		done: make(chan struct{}), sources: map[*net.UDPAddr]replySource{}}
	started := make(chan struct{})
	g.chain = &dns.Server{PacketConn: g.queue, Net: "udp", Handler: handler, TsigSecret: tsig,
		NotifyStartedFunc: func() { close(started) }}
	go func() { g.served <- g.chain.ActivateAndServe() }()
	select {
	case <-started: // Close may shut it down from now on
	case err := <-g.served:
		g.closeConns()
		return nil, fmt.Errorf("ingress: serving %s through the chain: %w", addr, err)
	}
	for _, c := range g.conns {
		g.loops.Add(1)
		go g.loop(c)
	}
	return g, nil
}

// Close withdraws the sockets from the preference, answers what was already steered to them, lets the
// chain finish its queries (up to chainGrace) and closes the sockets.
func (g *Ingress) Close() error {
	g.once.Do(func() {
		g.closing.Store(true)
		for _, c := range g.conns {
			withdraw(c, g.addr)
			c.SetReadDeadline(time.Now().Add(drainQuiet))
		}
		g.loops.Wait()
		// The chain's server stops reading once shut down: let it take what the loops queued first.
		for start := time.Now(); len(g.queue.in) > 0 && time.Since(start) < chainGrace; {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), chainGrace)
		defer cancel()
		g.chain.ShutdownContext(ctx)
		<-g.served
		g.closeConns()
	})
	return nil
}

func (g *Ingress) closeConns() {
	for _, c := range g.conns {
		c.Close()
	}
}

// loop serves one socket until Close has drained it.
func (g *Ingress) loop(c *net.UDPConn) {
	defer g.loops.Done()
	b, err := newBatchIO(c, g.wild, g.counts.Latency != nil)
	if err != nil {
		return // closed already
	}
	var latency *latencyShard
	var received [batchSize]int64 // when the kernel received the query of each reply of a batch
	if g.counts.Latency != nil {
		latency = g.counts.Latency.shard()
	}
	drainStart := time.Time{}
	for {
		n, err := b.read()
		if g.closing.Load() {
			if drainStart.IsZero() {
				drainStart = time.Now()
			}
			if n == 0 || time.Since(drainStart) > drainMax {
				return
			}
			c.SetReadDeadline(time.Now().Add(drainQuiet)) // quiet for that long: nothing more was steered here
		} else if err != nil && n == 0 {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			runtime.Gosched() // a transient error (ENOBUFS): try again, without spinning the CPU alone
			continue
		}
		out, chained, dropped := 0, 0, 0
		for i := range n {
			client, ok := b.client(i)
			if !ok {
				continue // not from an IP client: nothing to answer
			}
			var dst netip.Addr // where the query came to, and its reply leaves from, on a wildcard socket
			if g.wild {
				if dst, ok = destinationOf(b.oob(i)); !ok {
					continue // no destination: a reply could leave from the wrong address
				}
			}
			query := b.datagram(i)
			if reply, ok := g.tryRespond(b.replyBuffer(out), query, client); ok {
				b.queueReply(out, reply, i, dst)
				if latency != nil {
					received[out] = receivedAt(b.oob(i))
				}
				out++
				continue
			}
			from := b.udpAddr(i, client)
			var source []byte
			if g.wild {
				source = sourceMessage(dst)
			}
			g.queue.remember(from, source)
			select {
			case g.queue.in <- datagram{b: append([]byte(nil), query...), from: from}:
				chained++
			default:
				g.queue.forget(from)
				dropped++
			}
		}
		b.write(out)
		if latency != nil && out > 0 {
			sent := time.Now().UnixNano() // the receive timestamps' clock: CLOCK_REALTIME
			for _, at := range received[:out] {
				if at != 0 {
					latency.observe(sent - at)
				}
			}
		}
		g.count(out, chained, dropped)
	}
}

// count reports one batch's datagrams, once per batch rather than once per datagram.
func (g *Ingress) count(answered, chained, dropped int) {
	if answered > 0 {
		g.counts.Answered(answered)
	}
	if chained > 0 {
		g.counts.Chained(chained)
	}
	if dropped > 0 {
		g.counts.Dropped(dropped)
	}
}

// tryRespond is Respond, but a query that makes it panic goes to the chain, whose server recovers and
// logs, instead of taking the process down.
func (g *Ingress) tryRespond(out, query []byte, client netip.AddrPort) (reply []byte, ok bool) {
	defer func() {
		if recover() != nil {
			reply, ok = out, false
		}
	}()
	return g.respond(out, query, client)
}

// listenSteered opens a socket in addr's SO_REUSEPORT group, preferred for datagrams processed on cpu,
// with each datagram's receive timestamp when stamped.
func listenSteered(addr string, cpu int, stamped bool) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var opterr error
		err := rc.Control(func(fd uintptr) {
			if opterr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); opterr != nil {
				return
			}
			if opterr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_INCOMING_CPU, cpu); opterr != nil {
				return
			}
			if stamped {
				if opterr = wantTimestamps(int(fd)); opterr != nil {
					return
				}
			}
			// Room for the queries that arrive while the loop is off the CPU (a table rebuild on
			// the same core): past net.core.rmem_max with CAP_NET_ADMIN, else up to it.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer) != nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, receiveBuffer)
			}
		})
		if err != nil {
			return err
		}
		return opterr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("ingress: joining %s for CPU %d: %w", addr, cpu, err)
	}
	return pc.(*net.UDPConn), nil
}

// withdraw stops the group from choosing c, keeping what is queued on it to be read: it drops the CPU
// preference and connects c to its own address, and the kernel passes over connected sockets when
// it picks one for a datagram from anyone else. Replies still go out: a UDP socket sends to an
// explicit address connected or not.
func withdraw(c *net.UDPConn, self *net.UDPAddr) {
	rc, err := c.SyscallConn()
	if err != nil {
		return // closed already
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_INCOMING_CPU, -1)
		var sa unix.Sockaddr
		if ip4 := self.IP.To4(); ip4 != nil {
			sa = &unix.SockaddrInet4{Port: self.Port, Addr: [4]byte(ip4)}
		} else {
			sa = &unix.SockaddrInet6{Port: self.Port, Addr: [16]byte(self.IP.To16())}
		}
		unix.Connect(int(fd), sa)
	})
}

// possibleCPUs is the number of CPUs the kernel may process datagrams on: every one of them needs a
// socket, whatever this process's own affinity.
func possibleCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return runtime.NumCPU()
	}
	n, ok := parseCPUList(strings.TrimSpace(string(b)))
	if !ok {
		return runtime.NumCPU()
	}
	return n
}

// parseCPUList returns one more than the highest CPU of a kernel CPU list ("0-3,8").
func parseCPUList(s string) (int, bool) {
	highest := -1
	for _, part := range strings.Split(s, ",") {
		first, last, isRange := strings.Cut(part, "-")
		if !isRange {
			last = first
		}
		lo, err1 := strconv.Atoi(first)
		n, err2 := strconv.Atoi(last)
		if err1 != nil || err2 != nil || lo < 0 || n < lo || n > 4095 {
			return 0, false
		}
		highest = max(highest, n)
	}
	return highest + 1, highest >= 0
}
