package xds

import (
	"math/rand/v2"
	"time"
)

// Backoff bounds between reconnection attempts, by default.
const (
	DefaultBackoffBase = 500 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
)

// Backoff is capped exponential backoff with full jitter: a crowd of resolvers that lost the same
// istiod does not come back in step.
type Backoff struct {
	Base, Max time.Duration
	attempt   int
}

// Next is the wait before the next attempt: a random time between half and all of Base doubled once
// per attempt so far, at most Max.
func (b *Backoff) Next() time.Duration {
	d := b.Base << min(b.attempt, 16)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	b.attempt++
	return d/2 + rand.N(d/2+1)
}

// Reset starts again from Base, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }
