package kubernetes

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// TestHandleDebug: a handler another source registers is served beside /visibility.
func TestHandleDebug(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Source{cfg: &Config{Debug: addr}}
	s.HandleDebug("/multicluster", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "mesh") }))
	stop, err := s.serveDebug()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/multicluster?name=web.shop.global")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "mesh" {
		t.Errorf("/multicluster: %q", b)
	}
	resp, err = http.Get("http://" + addr + "/visibility")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/visibility without a host: %d, want 400", resp.StatusCode)
	}
}
