package nds

import (
	"math/rand/v2"
	"time"
)

// backoff is capped exponential backoff with full jitter: a crowd of resolvers that lost the same
// istiod does not come back in step.
type backoff struct {
	base, max time.Duration
	attempt   int
}

func (b *backoff) next() time.Duration {
	d := b.base << min(b.attempt, 16)
	if d <= 0 || d > b.max {
		d = b.max
	}
	b.attempt++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.attempt = 0 }
