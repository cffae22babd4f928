package realstack

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// APIProxy is a TCP forwarder in front of the API server that a test can cut: the clients given its
// kubeconfig lose the API server while the test's own client (Stack.Kube) still reaches it, so that
// a change can be made while they are cut off, as during an outage that only they see or one that
// outlasts an API server restart.
type APIProxy struct {
	Kubeconfig string // admin kubeconfig leading through the proxy
	Addr       string // 127.0.0.1:port

	target string
	l      net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

// StartAPIProxy starts a proxy to the stack's API server, ended with the test. The API server's
// certificate names 127.0.0.1, so its clients verify it as they would directly.
func (s *Stack) StartAPIProxy(t testing.TB) *APIProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("API proxy: %v", err)
	}
	ca, err := os.ReadFile(filepath.Join(s.Dir, "apiserver", "apiserver.crt"))
	if err != nil {
		t.Fatalf("API proxy: the API server's certificate: %v", err)
	}
	p := &APIProxy{Addr: l.Addr().String(), target: s.APIServer[len("https://"):], l: l, conns: map[net.Conn]bool{}}
	p.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig-proxied")
	if err := os.WriteFile(p.Kubeconfig, []byte(adminKubeconfig("https://"+p.Addr, ca, s.AdminToken, "")), 0o600); err != nil {
		t.Fatalf("API proxy: %v", err)
	}
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		p.Cut()
	})
	return p
}

// Cut resets every connection through the proxy and refuses new ones until Restore.
func (p *APIProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore lets connections through again.
func (p *APIProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *APIProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *APIProxy) forward(c net.Conn) {
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut {
		c.Close()
		return
	}
	d, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, d) {
		c.Close()
		d.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		done <- struct{}{}
	}
	go pipe(d, c)
	go pipe(c, d)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, d)
	p.mu.Unlock()
}

// track records a connection pair, unless the proxy was cut meanwhile.
func (p *APIProxy) track(c, d net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c], p.conns[d] = true, true
	return true
}

func (p *APIProxy) String() string { return fmt.Sprintf("API proxy %s -> %s", p.Addr, p.target) }
