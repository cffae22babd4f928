package file

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/fsnotify/fsnotify"
)

// DefaultInterval is how often the file is checked for changes unless the Corefile says otherwise.
const DefaultInterval = 5 * time.Second

// settle is how long the directory must be quiet after a change notice before the file is read, so
// that a writer that truncates and then writes is read once, whole.
const settle = 100 * time.Millisecond

// Source reads a NameTable file and publishes it again whenever the file changes.
type Source struct {
	path     string
	interval time.Duration
	last     stamp
}

// stamp tells whether a file changed since it was read. The inode catches the symlink swaps that
// Kubernetes ConfigMap volumes make, where the size and time may stay the same.
type stamp struct {
	mod   time.Time
	size  int64
	inode uint64
	err   string
}

var _ source.Source = (*Source)(nil)

// New returns a source for the file at path, checked every interval.
func New(path string, interval time.Duration) *Source {
	return &Source{path: path, interval: interval}
}

// Kind implements source.Source.
func (s *Source) Kind() string { return "file" }

// String implements source.Source.
func (s *Source) String() string { return "file " + s.path }

// Load reads and parses the file now.
func (s *Source) Load() ([]table.Entry, error) {
	st, err := s.stat()
	s.last = st
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, err
	}
	return Parse(s.path, data)
}

// Run implements source.Source. It checks the file every interval, and also as soon as the file's
// directory reports a change where the system can watch it, and publishes the file when it changed.
// A file that fails to read or parse is rejected once per change; the last good table stays.
func (s *Source) Run(ctx context.Context, sink source.Sink) {
	if s.interval <= 0 {
		return
	}
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var (
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		// The directory, not the file: editors and ConfigMap volumes replace the file by renaming.
		if err := w.Add(filepath.Dir(s.path)); err == nil {
			events, errs = w.Events, w.Errors
		}
	}
	settled := time.NewTimer(settle)
	settled.Stop()
	defer settled.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			settled.Reset(settle)
			continue
		case <-errs:
			continue // a lost notice is caught by the next tick
		case <-settled.C:
		case <-tick.C:
		}
		st, _ := s.stat()
		if st == s.last {
			continue
		}
		entries, err := s.Load()
		if err != nil {
			sink.Reject(err)
			continue
		}
		sink.Publish(entries)
	}
}

func (s *Source) stat() (stamp, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return stamp{err: err.Error()}, err
	}
	st := stamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.inode = sys.Ino
	}
	return st, nil
}
