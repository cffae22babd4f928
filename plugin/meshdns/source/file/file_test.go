package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/table"
)

// recordingSink keeps what a source delivered, and signals each delivery.
type recordingSink struct {
	mu        sync.Mutex
	published [][]table.Entry
	rejected  []error
	events    chan struct{}
}

func newRecordingSink() *recordingSink { return &recordingSink{events: make(chan struct{}, 16)} }

func (s *recordingSink) Publish(e []table.Entry) {
	s.mu.Lock()
	s.published = append(s.published, e)
	s.mu.Unlock()
	s.events <- struct{}{}
}

func (s *recordingSink) Reject(err error) {
	s.mu.Lock()
	s.rejected = append(s.rejected, err)
	s.mu.Unlock()
	s.events <- struct{}{}
}

func (s *recordingSink) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.events:
	case <-time.After(5 * time.Second):
		t.Fatal("the source reported nothing within 5s")
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// Write and rename, as editors and ConfigMap volumes do, so the source never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestSourceFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.yaml")
	writeFile(t, path, "table:\n  a.b: {ips: [10.0.0.1]}\n")
	src := New(path, 10*time.Millisecond)
	entries, err := src.Load()
	if err != nil || len(entries) != 1 {
		t.Fatalf("Load: %v, %v", entries, err)
	}

	sink := newRecordingSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx, sink); close(done) }()

	writeFile(t, path, "table:\n  a.b: {ips: [10.0.0.1]}\n  c.d: {ips: [10.0.0.2]}\n")
	sink.wait(t)
	writeFile(t, path, "table:\n  a.b: {ips: [not-an-ip]}\n")
	sink.wait(t)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	sink.wait(t)
	writeFile(t, path, "table:\n  e.f: {ips: [10.0.0.3]}\n")
	sink.wait(t)
	cancel()
	<-done

	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.published) != 2 || len(sink.published[0]) != 2 || sink.published[1][0].Host != "e.f" {
		t.Errorf("published %+v", sink.published)
	}
	if len(sink.rejected) != 2 {
		t.Fatalf("rejected %v, want the bad file and the missing file, once each", sink.rejected)
	}
	if !errors.Is(sink.rejected[1], os.ErrNotExist) {
		t.Errorf("second rejection %v, want a missing file", sink.rejected[1])
	}
}

func TestSourceWithoutReloadStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.json")
	writeFile(t, path, `{"table": {}}`)
	done := make(chan struct{})
	go func() { New(path, 0).Run(context.Background(), newRecordingSink()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a source with RELOAD 0 kept running")
	}
}

func TestSourceSeesChangesBeforeTheNextTick(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.yaml")
	writeFile(t, path, "table: {}\n")
	src := New(path, time.Hour)
	if _, err := src.Load(); err != nil {
		t.Fatal(err)
	}
	sink := newRecordingSink()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx, sink)
	// The watch starts with Run; rewrite until it has seen one, far sooner than the hourly tick.
	for i := 0; ; i++ {
		writeFile(t, path, fmt.Sprintf("table:\n  a.b: {ips: [10.0.0.%d]}\n", i+1))
		select {
		case <-sink.events:
		case <-time.After(300 * time.Millisecond):
			if i < 20 {
				continue
			}
			t.Fatal("no change seen within 6s with an hourly tick")
		}
		break
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.published) != 1 || len(sink.published[0]) != 1 {
		t.Errorf("published %+v, rejected %v", sink.published, sink.rejected)
	}
}
