// Package test holds meshdns's integration tests: the real coredns binary started from Corefiles on
// free loopback ports, with a real upstream behind forward, queried by real clients (miekg/dns, the Go
// resolver, dig).
package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// binary is the coredns binary under test: $MESHDNS_BIN, or one built for this run.
var binary string

func TestMain(m *testing.M) {
	code := func() int {
		binary = os.Getenv("MESHDNS_BIN")
		if binary == "" {
			dir, err := os.MkdirTemp("", "meshdns-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			binary = filepath.Join(dir, "coredns")
			// Static, as the image's: the image tests then take this one (staticBinary), and a
			// fresh machine compiles the module graph once, not once for each linking.
			build := exec.Command("go", "build", "-o", binary, "../cmd/coredns")
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			build.Stdout, build.Stderr = os.Stdout, os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "building coredns:", err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// freePort returns a port free on 127.0.0.1 for both UDP and TCP at the time of the call.
func freePort(t testing.TB) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return fmt.Sprint(port)
		}
	}
	t.Fatal("no free port")
	return ""
}

// server is a running coredns process.
type server struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCoreDNS writes corefile into dir and runs the binary on it from dir, then waits until addr
// answers DNS. The process is stopped when the test ends.
func startCoreDNS(t testing.TB, dir, corefile, addr string) *server {
	t.Helper()
	return startCoreDNSEnv(t, dir, corefile, addr, nil)
}

// startCoreDNSEnv is startCoreDNS with env (KEY=VALUE) added to the binary's environment.
func startCoreDNSEnv(t testing.TB, dir, corefile, addr string, env []string) *server {
	t.Helper()
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &server{out: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(binary, "-conf", path)
	if env != nil {
		s.cmd.Env = append(os.Environ(), env...)
	}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("coredns output:\n%s", s.out)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			t.Fatalf("coredns exited: %v\n%s", err, s.out)
		default:
		}
		c := &dns.Client{Timeout: 200 * time.Millisecond}
		m := new(dns.Msg)
		m.SetQuestion("startup.probe.invalid.", dns.TypeA)
		if _, _, err := c.Exchange(m, addr); err == nil {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("coredns did not answer on %s within 20s\n%s", addr, s.out)
	return nil
}

// stop ends the server gracefully (SIGTERM) and waits for it, before the test ends.
func (s *server) stop(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := <-s.done
	s.done <- err // for the cleanup's wait
}

// reload sends SIGUSR1 and waits until the binary has finished that reload. CoreDNS takes one
// signal at a time and holds at most one more while it reloads: a test that signals again before a
// slow reload is done (a loaded machine, a new instance waiting for its sources) loses a reload.
func (s *server) reload(t *testing.T) {
	t.Helper()
	ended := func() int {
		out := s.out.String()
		return strings.Count(out, "[INFO] Reloading complete") + strings.Count(out, "[ERROR] Restart failed")
	}
	before := ended()
	if err := s.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the end of a reload (SIGUSR1)", func() error {
		if ended() == before {
			return fmt.Errorf("neither %q nor %q in the log since the signal", "Reloading complete", "Restart failed")
		}
		return nil
	})
}

// upstream is a real DNS server standing in for the resolvers behind forward. It answers every A
// question with 192.0.2.53 and counts the questions it saw, so tests can tell what was forwarded.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
}

// upstreamReply is what the upstreams of these tests answer: 192.0.2.53 for every A question.
func upstreamReply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if q := r.Question[0]; q.Qtype == dns.TypeA {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 53)})
	}
	return m
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{seen: map[string]int{}}
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for range 20 { // the UDP port's TCP twin may be taken by another process
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.addr = pc.LocalAddr().String()
		if l, err = net.Listen("tcp", u.addr); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		u.mu.Lock()
		u.seen[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]]++
		u.mu.Unlock()
		w.WriteMsg(upstreamReply(r))
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: l, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return u
}

// count returns how often the upstream saw a question ("name. TYPE").
func (u *upstream) count(q string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[q]
}

func (u *upstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.seen {
		n += c
	}
	return n
}

// exchange asks addr one question over net ("udp" or "tcp"); bufsize > 0 adds EDNS0.
func exchange(t testing.TB, netw, addr, name string, qtype uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := &dns.Client{Net: netw, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", netw, name, dns.TypeToString[qtype], err)
	}
	return r
}

// recordResult appends report, under the time, to bench/results' file of the day for name when
// MESHDNS_RESULTS names that folder (make soak, make bench-kube, ...).
func recordResult(t testing.TB, name, report string) {
	t.Helper()
	dir := os.Getenv("MESHDNS_RESULTS")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, time.Now().Format("2006-01-02")+"-"+name+".txt")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = fmt.Fprintf(f, "# %s\n%s\n", time.Now().UTC().Format(time.RFC3339), strings.TrimRight(report, "\n"))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Errorf("recording results: %v", err)
	}
}

// eventually retries check until it passes or the timeout ends.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

func goResolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}
