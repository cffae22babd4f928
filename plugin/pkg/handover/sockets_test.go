package handover

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const sampleUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  821: 0A14FEA9:0035 00000000:0000 07 00000000:00000340 00:00000000 00000000     0        0 41873 2 0000000000000000 0
 1203: 0100007F:D431 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 41990 2 0000000000000000 0
`

const sampleUDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  821: 000000FD00000000000000000A14FEA9:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41874 2 0000000000000000 0
`

func TestParseTable(t *testing.T) {
	socks, err := ParseTable(strings.NewReader(sampleUDP))
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 2 {
		t.Fatalf("%d sockets, want 2", len(socks))
	}
	want := Socket{Local: netip.MustParseAddrPort("169.254.20.10:53"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), RxQueue: 0x340, Inode: 41873}
	if socks[0] != want {
		t.Errorf("first socket %+v, want %+v", socks[0], want)
	}
	if socks[1].Local != netip.MustParseAddrPort("127.0.0.1:54321") || socks[1].Remote != netip.MustParseAddrPort("127.0.0.1:53") {
		t.Errorf("second socket %+v", socks[1])
	}
	socks, err = ParseTable(strings.NewReader(sampleUDP6))
	if err != nil {
		t.Fatal(err)
	}
	if got := socks[0].Local; got != netip.MustParseAddrPort("[fd00::a9fe:140a]:53") {
		t.Errorf("IPv6 socket on %v", got)
	}
	for _, bad := range []string{
		"header\n 1: 0A14FEA9:0035 00000000:0000 07\n",                                                // too few fields
		"header\n 1: 0A14FEA9 00000000:0000 07 0:0 0 0 0 0 1 2\n",                                     // no port
		"header\n 1: 0A14FE:0035 00000000:0000 07 0:0 0 0 0 0 1 2\n",                                  // three bytes
		"header\n 1: 0A14FEA9:0035 00000000:0000 07 00000000 0 0 0 0 1 2\n",                           // no rx queue
		"header\n 1: 0A14FEA9:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 x 2\n", // inode
	} {
		if _, err := ParseTable(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: error %v, want one naming line 2", bad, err)
		}
	}
}

// TestHelperBind is not a test: TestOthers runs it in a child process, which holds a UDP socket.
func TestHelperBind(t *testing.T) {
	addr := os.Getenv("HANDOVER_HELPER_ADDR")
	if addr == "" {
		t.Skip("helper process only")
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	os.Stdout.WriteString("bound\n")
	time.Sleep(time.Minute)
}

// TestOthers tells this process's sockets from another's on the same machine.
func TestOthers(t *testing.T) {
	mine, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	own := netip.MustParseAddrPort(mine.LocalAddr().String())
	theirs := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), own.Port()+1)
	nobody := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), own.Port()+2)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBind$")
	cmd.Env = append(os.Environ(), "HANDOVER_HELPER_ADDR="+theirs.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "bound\n" {
		t.Skipf("the helper could not bind %v: %q %v", theirs, buf, err)
	}
	got, err := Others([]netip.AddrPort{own, theirs, nobody})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != theirs {
		t.Errorf("Others = %v, want only %v (the child's)", got, theirs)
	}
}

// TestWithdraw checks that a withdrawn socket is connected to itself and still gives what was
// queued on it before.
func TestWithdraw(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := netip.MustParseAddrPort(c.LocalAddr().String())
	sender, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	if _, err := sender.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte)
	go func() {
		time.Sleep(50 * time.Millisecond) // withdrawn first, read afterwards
		buf := make([]byte, 16)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, _ := c.ReadFrom(buf)
		done <- buf[:n]
	}()
	n, err := Withdraw([]netip.AddrPort{addr}, time.Second)
	if err != nil || n != 1 {
		t.Fatalf("Withdraw: %d sockets, %v", n, err)
	}
	if got := <-done; string(got) != "queued" {
		t.Errorf("read %q after the withdrawal, want the queued datagram", got)
	}
	socks, err := udpSockets()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if s.Local == addr && s.Remote != addr {
			t.Errorf("withdrawn socket is connected to %v, want itself", s.Remote)
		}
	}
}
