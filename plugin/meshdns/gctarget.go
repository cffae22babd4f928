package meshdns

import (
	"os"
	"runtime/debug"
	"sync"
)

// steadyGCPercent is the garbage collector's target once the first table is served: a new heap of
// half the live one between collections, not all of it. The first lists of a cluster or a mesh are
// collected at Go's default (100), which gets to ready soonest; after that a resolver mostly sits on
// its table, serving without allocating, and what allocates in bursts is a relist or a large push,
// whose garbage would otherwise double the process's memory on every node at once (an API server's
// restart). The collections cost CPU only during those bursts.
const steadyGCPercent = 50

var settleGCOnce sync.Once

// settleGC sets the steady GC target, once per process, unless the operator chose one (GOGC).
func settleGC() {
	settleGCOnce.Do(func() {
		if _, set := os.LookupEnv("GOGC"); set {
			return
		}
		debug.SetGCPercent(steadyGCPercent)
		log.Infof("first table served: garbage collected at %d%% of the live heap from now on (GOGC unset)", steadyGCPercent)
	})
}
