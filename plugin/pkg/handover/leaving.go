package handover

import "sync/atomic"

var leaving atomic.Bool

// Leave marks this process as on its way out (SIGTERM or SIGINT): its readiness is false from now on,
// so that whatever routes by readiness stops choosing it while it still answers.
func Leave() { leaving.Store(true) }

// Leaving reports whether Leave was called.
func Leaving() bool { return leaving.Load() }
