package kubewatch

import (
	"context"
	"testing"
	"time"

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
