package ingress

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// echoReply answers every query from bytes without allocating: the query itself with QR set, so
// that what allocates is the ingress's path alone.
func echoReply(out, query []byte, _ netip.AddrPort) ([]byte, bool) {
	if len(query) < 12 {
		return out, false
	}
	out = append(out, query...)
	out[2] |= 0x80
	return out, true
}

// A datagram read and its reply written through the real sockets allocate nothing: not per
// datagram, not per batch. The client's connected socket allocates nothing either, so the count is
// the ingress's, on a specific address of each family and on a wildcard (the control messages).
func TestIngressAllocatesNothingPerDatagram(t *testing.T) {
	for _, tc := range []struct{ listen, ask string }{
		{"127.0.0.1:0", ""},
		{"[::1]:0", ""},
		{":0", "127.0.0.1"},
		{":0", "::1"},
	} {
		t.Run(tc.listen+tc.ask, func(t *testing.T) {
			addr := coreDNSSocket(t, tc.listen)
			host, port, _ := net.SplitHostPort(addr)
			g, err := Listen(net.JoinHostPort(map[bool]string{true: "", false: host}[tc.ask != ""], port), echoReply, answerWith("10.0.0.3"), nil, (&counted{}).counts())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.Close() })
			if tc.ask != "" {
				host = tc.ask
			}
			conn, err := net.Dial("udp", net.JoinHostPort(host, port))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			m := new(dns.Msg)
			m.SetQuestion("fast.example.", dns.TypeA)
			query, _ := m.Pack()
			reply := make([]byte, 512)
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			exchange := func() {
				if _, err := conn.Write(query); err != nil {
					t.Fatal(err)
				}
				n, err := conn.Read(reply)
				if err != nil || n != len(query) || reply[2]&0x80 == 0 {
					t.Fatalf("no echoed reply (%d bytes, %v): the ingress did not answer", n, err)
				}
			}
			for range 100 { // every loop's buffers and the netpoller's state in place
				exchange()
			}
			if allocs := testing.AllocsPerRun(2000, exchange); allocs != 0 {
				t.Errorf("%.2f allocations per datagram, want 0", allocs)
			}
		})
	}
}
