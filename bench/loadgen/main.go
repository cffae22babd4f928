// Command loadgen is the DNS load generator of bench/push-latency.sh: it sends the queries of a
// dnsperf data file ("name type" lines) over UDP at a fixed rate, open loop, and reports the latency
// percentiles of the answers. dnsperf measures from the moment it actually sends, so a client or a
// server that stalls holds back the queries that should have seen the stall (coordinated omission),
// and on a shared core its own receive thread adds to every latency. Here each query's latency runs
// from the moment the schedule says it is due to the kernel's receive timestamp of its answer
// (SO_TIMESTAMPNS): a stall anywhere shows in full, the client's own scheduling after the answer
// arrived does not, and how late the sender itself was is reported apart (sendlag), so a run in
// which the client was the limit can be told from one in which the server was.
//
// With -rate 0 it runs closed loop instead, -outstanding queries in flight, for a saturation run.
// It prints one line of key=value pairs (latencies in ms) and exits non-zero when it cannot run.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

const (
	batchSize = 64      // datagrams per sendmmsg and recvmmsg
	oobSize   = 64      // control message bytes per datagram: its receive timestamp
	rcvBuffer = 8 << 20 // a client that drops answers would count them lost against the server
	idSpace   = 1 << 16 // query IDs per socket: with the sockets, the queries in flight at most
)

func main() {
	var (
		server      = flag.String("server", "127.0.0.1:53", "the DNS server (UDP)")
		data        = flag.String("d", "", "dnsperf data file: one \"name type\" per line")
		rate        = flag.Int("rate", 10000, "queries per second; 0: closed loop with -outstanding in flight")
		duration    = flag.Duration("duration", 10*time.Second, "measured time")
		warmup      = flag.Duration("warmup", 2*time.Second, "time at the rate before measuring")
		timeout     = flag.Duration("timeout", 2*time.Second, "after this, a query without an answer is lost")
		sockets     = flag.Int("sockets", 16, "UDP sockets (source ports) the queries are spread over")
		outstanding = flag.Int("outstanding", 500, "queries in flight in closed loop (-rate 0)")
	)
	flag.Parse()
	if *data == "" || *rate < 0 || *duration <= 0 || *warmup < 0 || *timeout <= 0 || *sockets < 1 || *outstanding < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: want -d FILE, -rate >= 0, -duration > 0, -warmup >= 0, -timeout > 0, -sockets >= 1, -outstanding >= 1")
		os.Exit(2)
	}
	// IDs repeat on a socket after idSpace queries: that must take longer than a query may be in flight.
	if *rate > 0 && float64(idSpace**sockets)/float64(*rate) < 1.5*timeout.Seconds() {
		fmt.Fprintf(os.Stderr, "loadgen: %d sockets reuse query IDs within the timeout at %d q/s: use more -sockets\n", *sockets, *rate)
		os.Exit(2)
	}
	queries, err := readQueries(*data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	// The sender's thread sleeps in the kernel between queries; the receivers need a P of their own
	// meanwhile, whatever the affinity the client was pinned to.
	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	r := &run{queries: queries, rate: *rate, window: int64(*outstanding)}
	if err := r.open(*server, *sockets); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	res := r.measure(*warmup, *duration, *timeout)
	fmt.Println(res)
}

// readQueries packs every query of a dnsperf data file once; sending then only stamps the ID.
func readQueries(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		qtype := dns.TypeA
		if len(fields) > 1 {
			t, ok := dns.StringToType[strings.ToUpper(fields[1])]
			if !ok {
				return nil, fmt.Errorf("%s:%d: unknown query type %q", path, line, fields[1])
			}
			qtype = t
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fields[0]), qtype)
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, nil
}

// run is one load: query k is due at start + k/rate and goes out on socket k mod len(socks) with
// ID (k / len(socks)) mod idSpace, so a receiver finds a query's due time from its socket and ID alone.
type run struct {
	queries [][]byte
	rate    int
	window  int64 // closed loop: queries in flight

	socks   []*sock
	start   time.Time // when query 0 is due
	startNs int64     // the same on the wall clock, which every due time and answer is reckoned in:
	// the kernel timestamps answers with it, and the monotonic clock may drift from it during a run

	sent, received atomic.Int64
}

type sock struct {
	conn *ipv4.PacketConn
	mu   sync.Mutex
	lat  []int64 // ns from due to answered, every query answered within the timeout
	seq  []int64 // the query of each lat
}

func (r *run) open(server string, n int) error {
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return err
	}
	for range n {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return err
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var opterr error
		if err := rc.Control(func(fd uintptr) {
			opterr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuffer))
			if opterr != nil { // SO_RCVBUFFORCE needs CAP_NET_ADMIN; the sysctl limit then applies
				opterr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuffer))
			}
		}); err != nil {
			return err
		}
		if opterr != nil {
			return fmt.Errorf("setting up a socket: %w", opterr)
		}
		r.socks = append(r.socks, &sock{conn: ipv4.NewPacketConn(c)})
	}
	return nil
}

// result is what a run prints.
type result struct {
	sent, answered, lost int64
	qps                  float64
	lat, sendLag         []int64
	service              []int64 // from actually sent to answered: what the server (and the kernel) took
}

func (res result) String() string {
	slices.Sort(res.lat)
	slices.Sort(res.sendLag)
	slices.Sort(res.service)
	return fmt.Sprintf("sent=%d answered=%d lost=%d qps=%.0f p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f sendlag_p99=%.3f sendlag_max=%.3f service_p50=%.3f service_p99=%.3f service_p99.9=%.3f",
		res.sent, res.answered, res.lost, res.qps,
		pct(res.lat, 0.5), pct(res.lat, 0.9), pct(res.lat, 0.99), pct(res.lat, 0.999), pct(res.lat, 1),
		pct(res.sendLag, 0.99), pct(res.sendLag, 1),
		pct(res.service, 0.5), pct(res.service, 0.99), pct(res.service, 0.999))
}

// pct is the p-quantile of sorted ns values, in ms.
func pct(v []int64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(float64(len(v))*p+0.999999) - 1
	return float64(v[max(0, min(i, len(v)-1))]) / 1e6
}

func (r *run) measure(warmup, duration, timeout time.Duration) result {
	r.start = time.Now().Add(10 * time.Millisecond)
	r.startNs = r.start.UnixNano()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range r.socks {
		wg.Go(func() { r.receive(i, s, timeout) })
	}
	lagc := make(chan []int64, 1)
	go func() {
		// The sender keeps a thread of its own and sleeps on it in the kernel: the runtime's timers
		// wake a goroutine up to a millisecond late when the process is otherwise idle (epoll's
		// resolution), and that lateness would count against the server.
		runtime.LockOSThread()
		unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		lagc <- r.send(stop)
	}()

	time.Sleep(time.Until(r.start.Add(warmup)))
	from := r.sent.Load()
	answeredBefore := r.received.Load()
	t0 := time.Now()
	time.Sleep(duration)
	to := r.sent.Load()
	elapsed := time.Since(t0)
	answeredDuring := r.received.Load() - answeredBefore
	close(stop)
	lag := <-lagc
	time.Sleep(timeout) // the last queries' answers, or their loss
	for _, s := range r.socks {
		s.conn.Close()
	}
	wg.Wait()

	res := result{sent: to - from, qps: float64(answeredDuring) / elapsed.Seconds()}
	if r.rate > 0 {
		// Only the measured queries' send lags.
		lo := min(int(from), len(lag))
		hi := min(int(to), len(lag))
		res.sendLag = lag[lo:hi]
	}
	for _, s := range r.socks {
		s.mu.Lock()
		// The receivers keep every answer, and the window is applied here, once both its ends are
		// known: a receiver that read them itself, as the window opened, would miss the answers to
		// queries sent while the window's start was being set (seen as a few queries lost per run).
		for j, k := range s.seq {
			if k < from || k >= to {
				continue
			}
			res.answered++
			res.lat = append(res.lat, s.lat[j])
			if int(k) < len(lag) {
				res.service = append(res.service, s.lat[j]-lag[k])
			}
		}
		s.mu.Unlock()
	}
	res.lost = res.sent - res.answered
	return res
}

// send sends queries until stop: at their due times (open loop), or whenever fewer than window are
// in flight (closed loop). Open loop, it returns each query's send lag (ns after its due time).
func (r *run) send(stop <-chan struct{}) []int64 {
	n := len(r.socks)
	msgs := make([][]ipv4.Message, n)
	bufs := make([][][]byte, n)
	for i := range n {
		msgs[i] = make([]ipv4.Message, batchSize)
		bufs[i] = make([][]byte, batchSize)
		for j := range batchSize {
			bufs[i][j] = make([]byte, 0, 512)
			msgs[i][j].Buffers = [][]byte{nil}
		}
	}
	var lags []int64
	var k int64
	counts := make([]int, n)
	for {
		select {
		case <-stop:
			return lags
		default:
		}
		now := time.Now()
		var due int64
		if r.rate > 0 {
			due = int64(float64(now.UnixNano()-r.startNs)/1e9*float64(r.rate)) + 1
		} else {
			due = r.received.Load() + r.window
		}
		if due <= k {
			if r.rate > 0 {
				// Sleep until the next query is due; the runtime wakes a little late, which sendlag shows.
				if d := r.dueNs(k) - time.Now().UnixNano(); d > 0 {
					ts := unix.NsecToTimespec(d)
					unix.Nanosleep(&ts, nil)
				}
			} else {
				time.Sleep(20 * time.Microsecond)
			}
			continue
		}
		due = min(due, k+int64(batchSize*n)) // one batch per socket at most per round
		clear(counts)
		for ; k < due; k++ {
			si := int(k % int64(n))
			j := counts[si]
			q := r.queries[k%int64(len(r.queries))]
			b := append(bufs[si][j][:0], q...)
			id := uint16(k / int64(n))
			b[0], b[1] = byte(id>>8), byte(id)
			bufs[si][j] = b
			msgs[si][j].Buffers[0] = b
			counts[si]++
			if r.rate > 0 {
				lags = append(lags, now.UnixNano()-r.dueNs(k))
			}
		}
		for si, c := range counts {
			for off := 0; off < c; {
				w, err := r.socks[si].conn.WriteBatch(msgs[si][off:c], 0)
				if err != nil {
					fmt.Fprintln(os.Stderr, "loadgen: sending:", err)
					break // the query is lost; the count shows it
				}
				off += w
			}
		}
		r.sent.Store(k)
	}
}

// receive reads answers on socket i until it is closed, and records the latency of each measured one.
func (r *run) receive(i int, s *sock, timeout time.Duration) {
	n := int64(len(r.socks))
	msgs := make([]ipv4.Message, batchSize)
	for j := range msgs {
		msgs[j].Buffers = [][]byte{make([]byte, 1500)}
		msgs[j].OOB = make([]byte, oobSize)
	}
	for {
		got, err := s.conn.ReadBatch(msgs, 0)
		if err != nil {
			return // closed at the end of the run
		}
		now := time.Now()
		r.received.Add(int64(got))
		s.mu.Lock()
		for _, m := range msgs[:got] {
			if m.N < 12 {
				continue
			}
			id := int64(m.Buffers[0][0])<<8 | int64(m.Buffers[0][1])
			at := rxTime(m.OOB[:m.NN], now)
			if r.rate == 0 {
				continue // closed loop: counted, not timed
			}
			// The latest query of this socket and ID due before the answer came.
			k := r.latestQuery(int64(i), id, at, n)
			if k < 0 {
				continue
			}
			lat := at.UnixNano() - r.dueNs(k)
			if lat > int64(timeout) {
				continue // lost: an answer after the timeout is no answer
			}
			s.lat = append(s.lat, lat)
			s.seq = append(s.seq, k)
		}
		s.mu.Unlock()
	}
}

// dueNs is when query k is due, in wall-clock ns.
func (r *run) dueNs(k int64) int64 {
	return r.startNs + int64(float64(k)/float64(r.rate)*1e9)
}

// latestQuery is the query of socket i with ID id that was due last at or before t, or -1.
func (r *run) latestQuery(i, id int64, t time.Time, n int64) int64 {
	// Query k = (id + w*idSpace)*n + i; the largest w with a due time at or before t.
	dueIdx := int64(float64(t.UnixNano()-r.startNs) / 1e9 * float64(r.rate)) // the last query due by t
	if dueIdx < i {
		return -1
	}
	perSock := (dueIdx - i) / n // index of the socket's last query due by t
	w := (perSock - id) / idSpace
	if perSock < id {
		return -1
	}
	return (id+w*idSpace)*n + i
}

// rxTime is the kernel's receive timestamp in oob (SCM_TIMESTAMPNS), or fallback without one.
func rxTime(oob []byte, fallback time.Time) time.Time {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fallback
	}
	for _, c := range cmsgs {
		if c.Header.Level == unix.SOL_SOCKET && c.Header.Type == unix.SCM_TIMESTAMPNS && len(c.Data) >= 16 {
			// struct timespec on 64-bit Linux: seconds, then nanoseconds, each an int64.
			sec, nsec := int64(binary.NativeEndian.Uint64(c.Data)), int64(binary.NativeEndian.Uint64(c.Data[8:]))
			return time.Unix(sec, nsec)
		}
	}
	return fallback
}
