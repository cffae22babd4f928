package xds

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	prevMax := time.Duration(0)
	for i := range 40 {
		d := b.Next()
		ceiling := 2 * time.Second
		if i < 5 {
			ceiling = min(100*time.Millisecond<<i, ceiling)
		}
		if d < ceiling/2 || d > ceiling {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, ceiling/2, ceiling)
		}
		prevMax = max(prevMax, d)
	}
	if prevMax > 2*time.Second {
		t.Errorf("backoff passed its cap: %v", prevMax)
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
	seen := map[time.Duration]bool{}
	for range 20 {
		b := Backoff{Base: time.Second, Max: time.Minute}
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Errorf("no jitter: %v", seen)
	}
}
