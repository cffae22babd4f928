package ingress

import (
	"net"
	"sync"
	"time"
)

// chainConn is the net.PacketConn of the Ingress's own dns.Server: it reads the datagrams the loops
// hand over and writes replies through a steered socket, so that miekg/dns does for them all it does
// for CoreDNS's (unpacking, refusing malformed messages, TSIG) and the reply leaves from the address
// the query came to. The address each datagram came from is what RemoteAddr reports, as a
// *net.UDPAddr, so the chain's plugins see a UDP client as they always do.
type chainConn struct {
	local net.Addr
	out   *net.UDPConn
	in    chan datagram
	done  chan struct{}
	once  sync.Once

	// On a wildcard socket, the control message that sends the reply to each client address handed
	// over from the address it asked (miekg/dns gives WriteTo the very address ReadFrom returned).
	mu      sync.Mutex
	sources map[*net.UDPAddr]replySource
}

type replySource struct {
	oob []byte
	at  time.Time
}

// A query the chain never answers leaves its source behind: past maxSources they are swept after
// sourceTTL, longer than any plugin takes to answer.
const (
	maxSources = 4096
	sourceTTL  = 30 * time.Second
)

func (c *chainConn) remember(from *net.UDPAddr, oob []byte) {
	if oob == nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sources) >= maxSources {
		for a, s := range c.sources {
			if now.Sub(s.at) > sourceTTL {
				delete(c.sources, a)
			}
		}
	}
	c.sources[from] = replySource{oob: oob, at: now}
}

func (c *chainConn) forget(from *net.UDPAddr) (oob []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sources[from]; ok {
		delete(c.sources, from)
		return s.oob
	}
	return nil
}

type datagram struct {
	b    []byte
	from *net.UDPAddr
}

// ReadFrom blocks until a datagram is handed over or the conn is closed. miekg/dns sets no read
// deadline but the one in the past that stops its server.
func (c *chainConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-c.in: // what is queued comes first, closed or not
		return copy(p, d.b), d.from, nil
	default:
	}
	select {
	case d := <-c.in:
		return copy(p, d.b), d.from, nil // a datagram longer than p is cut, as a socket read would cut it
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *chainConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if a, ok := addr.(*net.UDPAddr); ok {
		if oob := c.forget(a); oob != nil {
			n, _, err := c.out.WriteMsgUDP(p, oob, a)
			return n, err
		}
	}
	return c.out.WriteTo(p, addr)
}

// Close stops ReadFrom; the steered socket stays open for the replies still being written.
func (c *chainConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *chainConn) LocalAddr() net.Addr                { return c.local }
func (c *chainConn) SetDeadline(t time.Time) error      { return c.SetReadDeadline(t) }
func (c *chainConn) SetWriteDeadline(t time.Time) error { return nil }

// SetReadDeadline stops ReadFrom once t has passed; miekg/dns's shutdown sets one long ago.
func (c *chainConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		c.Close()
	}
	return nil
}
