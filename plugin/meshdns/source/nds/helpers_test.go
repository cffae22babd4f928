package nds

import (
	"context"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/types/known/anypb"
)

func nameTable(entries ...table.Entry) *anypb.Any {
	return &anypb.Any{TypeUrl: TypeURL, Value: EncodeNameTable(entries)}
}

// sink records what the source publishes.
type sink struct {
	published chan []table.Entry
	rejected  chan error
}

func newSink() *sink {
	return &sink{published: make(chan []table.Entry, 16), rejected: make(chan error, 16)}
}

func (k *sink) Publish(e []table.Entry) { k.published <- e }
func (k *sink) Reject(err error)        { k.rejected <- err }

func (k *sink) next(t *testing.T) []table.Entry {
	t.Helper()
	select {
	case e := <-k.published:
		return e
	case err := <-k.rejected:
		t.Fatalf("rejected: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published within 10s")
	}
	return nil
}

func (k *sink) nextReject(t *testing.T) error {
	t.Helper()
	select {
	case e := <-k.published:
		t.Fatalf("published %v, want a rejection", e)
	case err := <-k.rejected:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("nothing rejected within 10s")
	}
	return nil
}

// runSource starts src against sink and stops it when the test ends, checking that Run returns.
func runSource(t *testing.T, src *Source, k source.Sink) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx, k); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return cancel
}
