// tracegaps reads a Go execution trace (runtime/trace, /debug/pprof/trace) and reports what held the
// Ps: every goroutine's running stretches, from when it was scheduled until it blocked, yielded or
// was preempted, longest first, with where each stretch began and ended, and a summary by
// goroutine. On a resolver with one P, a query that arrives during another goroutine's stretch waits
// for its end: the stretches of the goroutines that do not serve queries bound what a push, a build
// or the collector adds to query latency. The serving goroutines' own stretches are their batches.
//
// Usage: tracegaps [-min 500us] [-show 20] [-serve ingress.(*Ingress).loop] < trace.out
package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	minimum := flag.Duration("min", 500*time.Microsecond, "the shortest stretch listed")
	show := flag.Int("show", 20, "how many of the longest stretches are listed")
	serve := flag.String("serve", "ingress.(*Ingress).loop", "a function on the stacks of the goroutines that serve queries")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *minimum, *show, *serve); err != nil {
		fmt.Fprintln(os.Stderr, "tracegaps:", err)
		os.Exit(1)
	}
}

// settle is how long after the trace's start stretches are not listed.
const settle = 20 * time.Millisecond

// stretch is one goroutine's time on a P.
type stretch struct {
	g          trace.GoID
	at, length time.Duration
	from, to   string // where it resumed and where it stopped
	why        string // why it stopped
}

// goroutine is what the trace says of one goroutine.
type goroutine struct {
	serves   bool // seen with the serving function on its stack
	tracer   bool // the tracer's own goroutine
	running  trace.Time
	resumed  string // where it last stopped, so where it resumes
	total    time.Duration
	longest  time.Duration
	stretchN int
}

func run(in io.Reader, out io.Writer, minimum time.Duration, show int, serve string) error {
	r, err := trace.NewReader(in)
	if err != nil {
		return err
	}
	gs := map[trace.GoID]*goroutine{}
	get := func(g trace.GoID) *goroutine {
		if gs[g] == nil {
			gs[g] = &goroutine{}
		}
		return gs[g]
	}
	var long []stretch
	var first, last trace.Time
	var gcStretches, gcTotal time.Duration
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		g := get(st.Resource.Goroutine())
		from, to := st.Goroutine()
		where := frames(st.Stack, 5)
		var all strings.Builder
		for f := range st.Stack.Frames() {
			all.WriteString(f.Func + " ")
		}
		if strings.Contains(all.String(), serve) {
			g.serves = true
		}
		if strings.Contains(all.String(), "traceAdvancerState") || strings.Contains(all.String(), "runtime/trace.") {
			g.tracer = true // the trace's own work, which an untraced process does not do
		}
		switch {
		case from == trace.GoRunning && to == trace.GoRunning:
			// A new generation of the trace restates the state: the stretch goes on.
		case from == trace.GoUndetermined:
			// Running when the trace began: its stretch is cut, and holds the trace's start.
		case to == trace.GoRunning:
			g.running = ev.Time()
		case from == trace.GoRunning && g.running != 0:
			d := ev.Time().Sub(g.running)
			g.total += d
			g.longest = max(g.longest, d)
			g.stretchN++
			// The trace's start stops the world and holds the Ps for some milliseconds of its own.
			if d >= minimum && g.running.Sub(first) > settle {
				long = append(long, stretch{g: st.Resource.Goroutine(), at: g.running.Sub(first), length: d,
					from: g.resumed, to: where, why: st.Reason})
			}
			if strings.Contains(where, "gcBgMarkWorker") || st.Reason == "system goroutine wait" {
				gcStretches = max(gcStretches, d)
				gcTotal += d
			}
			g.running = 0
			g.resumed = where
		}
	}
	span := last.Sub(first)
	fmt.Fprintf(out, "trace of %.2f s; stretches of %v or more by goroutines that do not serve queries, longest first:\n", span.Seconds(), minimum)
	slices.SortFunc(long, func(a, b stretch) int { return cmp.Compare(b.length, a.length) })
	listed := 0
	for _, s := range long {
		if gs[s.g].serves || gs[s.g].tracer {
			continue
		}
		if listed == show {
			break
		}
		listed++
		fmt.Fprintf(out, "  %7.3f ms at %6.3f s, g%d (%s)\n      from %s\n      to   %s\n", ms(s.length), s.at.Seconds(), s.g, s.why, orNone(s.from), orNone(s.to))
	}
	if listed == 0 {
		fmt.Fprintln(out, "  none")
	}
	var serving, other goroutine
	for _, g := range gs {
		if g.tracer {
			continue
		}
		sum := &other
		if g.serves {
			sum = &serving
		}
		sum.total += g.total
		sum.longest = max(sum.longest, g.longest)
		sum.stretchN += g.stretchN
	}
	fmt.Fprintf(out, "serving goroutines: %.1f%% of the trace, %d stretches, longest %.3f ms\n", 100*serving.total.Seconds()/span.Seconds(), serving.stretchN, ms(serving.longest))
	fmt.Fprintf(out, "other goroutines:   %.1f%% of the trace, %d stretches, longest %.3f ms (of which the collector's workers %.3f ms, %.1f ms in all)\n",
		100*other.total.Seconds()/span.Seconds(), other.stretchN, ms(other.longest), ms(gcStretches), ms(gcTotal))
	return nil
}

// frames is the top n frames of s, outside the runtime, short names, innermost first.
func frames(s trace.Stack, n int) string {
	var parts []string
	for f := range s.Frames() {
		if len(parts) == 0 && (strings.HasPrefix(f.Func, "runtime.") || strings.HasPrefix(f.Func, "internal/")) {
			continue
		}
		name := f.Func
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		parts = append(parts, name)
		if len(parts) == n {
			break
		}
	}
	return strings.Join(parts, " < ")
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func orNone(s string) string {
	if s == "" {
		return "(start of the trace or of the goroutine)"
	}
	return s
}
