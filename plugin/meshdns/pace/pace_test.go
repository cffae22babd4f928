package pace

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// TestYieldServesTheNetwork checks that, with one P, a goroutine that ticks a Pacer through busy
// work lets a goroutine waiting on a socket read a datagram before the work ends, which
// runtime.Gosched would not do (the scheduler polls the network only when nothing is runnable).
func TestYieldServesTheNetwork(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 16)
		c.ReadFrom(buf)
		close(got)
	}()
	s, err := net.Dial("udp", c.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(10 * time.Millisecond) // the reader waits in the poller
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var p Pacer
	for units := 0; ; units++ {
		select {
		case <-got:
			return
		default:
		}
		if units > 1e9 {
			t.Fatal("the reader never ran during the work")
		}
		busy()
		p.Tick()
	}
}

var sink int

func busy() {
	for i := range 1000 {
		sink += i
	}
}

func BenchmarkTick(b *testing.B) {
	var p Pacer
	for b.Loop() {
		p.Tick()
	}
}

// TestPacersShareTheClock checks that a pacer yields on the time since work last yielded under any
// pacer, not since its own start: a push's phases each have a pacer, and each may be shorter than a
// slice.
func TestPacersShareTheClock(t *testing.T) {
	before := time.Since(epoch) - 2*Slice
	yielded.Store(int64(before))
	var fresh Pacer
	for range checkEvery {
		fresh.Tick()
	}
	if time.Duration(yielded.Load()) == before {
		t.Fatal("a new pacer did not yield, though work had run for two slices since the last yield")
	}
	now := yielded.Load()
	var another Pacer
	for range checkEvery {
		another.Tick()
	}
	if yielded.Load() != now && time.Since(epoch)-time.Duration(now) < Slice {
		t.Fatal("a new pacer yielded within a slice of the last yield")
	}
}
