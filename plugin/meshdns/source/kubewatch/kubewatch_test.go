package kubewatch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func TestRestConfig(t *testing.T) {
	kubeconfig := []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://192.0.2.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`)
	rc, err := RestConfig("", "", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://192.0.2.1:6443" || rc.UserAgent != "meshdns" || rc.QPS != 50 || rc.Burst != 100 {
		t.Errorf("config %s, user agent %q, qps %v burst %d", rc.Host, rc.UserAgent, rc.QPS, rc.Burst)
	}
	if _, err := RestConfig("", "", []byte("{not yaml")); err == nil {
		t.Error("a broken kubeconfig loaded")
	}
}

func TestWaitSynced(t *testing.T) {
	start := time.Now()
	calls := 0
	if !WaitSynced(context.Background(), []cache.InformerSynced{func() bool { calls++; return calls > 3 }}) {
		t.Fatal("not synced")
	}
	if time.Since(start) > time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if WaitSynced(ctx, []cache.InformerSynced{func() bool { return false }}) {
		t.Error("synced after its context ended")
	}
}

// The Services client asks for plain streams, the others for gzip: what the API server is asked is
// what decides, so that is what is checked, on the wire. (Over TLS, as API servers serve: client-go
// ignores DisableCompression for a plain-HTTP server, which it gives Go's default transport.)
func TestPlainClient(t *testing.T) {
	encodings := make(chan string, 2)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encodings <- r.Header.Get("Accept-Encoding")
		http.NotFound(w, r)
	}))
	defer srv.Close()
	rc := Tuned(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	plain, err := PlainClient(rc)
	if err != nil {
		t.Fatal(err)
	}
	compressed, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		kube kubernetes.Interface
		want string
	}{{"plain", plain, ""}, {"compressed", compressed, "gzip"}} {
		c.kube.CoreV1().Services("").List(context.Background(), metav1.ListOptions{})
		if got := <-encodings; got != c.want {
			t.Errorf("%s client: Accept-Encoding %q, want %q", c.name, got, c.want)
		}
	}
	if rc.DisableCompression {
		t.Error("PlainClient changed the configuration it was given")
	}
}
