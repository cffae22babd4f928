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

func (c *chainConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.out.WriteTo(p, addr) }

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
