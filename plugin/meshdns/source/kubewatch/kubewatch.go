// Package kubewatch holds the client-go pieces the two sources that watch Kubernetes API servers
// share: the kubernetes source (this cluster's names) and the multicluster source (the clusters of
// the mesh). It knows neither of them.
package kubewatch

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// RestConfig is the client configuration of a kubeconfig: the file at path (with context, or its
// current one), or the bytes of one (a remote secret's).
func RestConfig(path, context string, kubeconfig []byte) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if kubeconfig != nil {
		rc, err = clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	} else {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	}
	if err != nil {
		return nil, err
	}
	return Tuned(rc), nil
}

// Tuned sets what every client of ours shares: its name, and the rate for the first lists
// (informers list once and then watch: a higher rate only matters then).
func Tuned(rc *rest.Config) *rest.Config {
	rc.UserAgent = "meshdns"
	rc.QPS, rc.Burst = 50, 100
	return rc
}

// ServesResource reports whether the cluster serves gvr; ifUnknown is the answer when the API server
// cannot be asked (other than a plain "not found").
func ServesResource(kube kubernetes.Interface, gvr schema.GroupVersionResource, ifUnknown bool) bool {
	list, err := kube.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	switch {
	case apierrors.IsNotFound(err):
		return false
	case err != nil:
		return ifUnknown
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true
		}
	}
	return false
}

// WaitSynced waits until every informer has synced, checking every 10 ms: client-go's own wait
// checks every 100 ms, which would be most of the time to ready on a small cluster.
func WaitSynced(ctx context.Context, synced []cache.InformerSynced) bool {
	_, ok := WaitSyncedTimed(ctx, synced)
	return ok
}

// WaitSyncedTimed is WaitSynced, also returning how long each informer took to sync: where the time
// to ready goes.
func WaitSyncedTimed(ctx context.Context, synced []cache.InformerSynced) ([]time.Duration, bool) {
	start := time.Now()
	took := make([]time.Duration, len(synced))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for i, f := range synced {
			if took[i] == 0 && f() {
				took[i] = max(time.Since(start), 1)
			}
			done = done && took[i] != 0
		}
		if done {
			return took, true
		}
		select {
		case <-ctx.Done():
			return took, false
		case <-tick.C:
		}
	}
}

// Must panics on errors that only a programming mistake causes (handlers added to a running
// informer), never on anything from the cluster.
func Must(err error) {
	if err != nil {
		panic(err)
	}
}

// PlainClient is a client of cluster rc that asks for its streams uncompressed, for Services. The
// API server compresses a watch event by event, flushing each: a Service's event (about 500 bytes)
// then carries its own Huffman tables, and the stream of a first list is barely smaller for it (10k
// Services: 5.00 MB plain, 4.62 MB gzipped) while both ends spend CPU on every event, most of the
// time to sync on a busy node (bench-kube: Services in 0.39-0.46 s plain, 0.85-1.05 s gzipped).
// EndpointSlices, a kilobyte or more of repeated fields each, shrink five times: they keep the
// compressed client.
func PlainClient(rc *rest.Config) (kubernetes.Interface, error) {
	plain := rest.CopyConfig(rc)
	plain.DisableCompression = true
	return kubernetes.NewForConfig(plain)
}
