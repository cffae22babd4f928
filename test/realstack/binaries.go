// Package realstack runs the real control planes meshdns talks to — etcd, kube-apiserver and istiod
// (pilot-discovery) — on 127.0.0.1 for tests, and beside them a real Kubernetes node (StartNode:
// kube-controller-manager and kube-scheduler on the host; containerd, the kubelet and kube-proxy in a
// network namespace joined to the host by a veth). The binaries are built by build.sh (next to this
// file) from the Go module proxy and cached outside the checkout; tests skip when they are missing,
// unless MESHDNS_REQUIRE_STACK=1 (CI), where they fail.
package realstack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Versions of the binaries. Keep them in step with build.sh, which names the cache directories after them.
const (
	EtcdVersion  = "v3.7.3"
	KubeVersion  = "v1.37.2"
	IstioVersion = "v0.0.0-20260827124520-eed52ebb66ad" // istio.io/istio (1.31 development line)
	CNIVersion   = "v1.10.0"                            // github.com/containernetworking/plugins
)

// DefaultCacheDir is where build.sh puts the binaries unless MESHDNS_STACK_CACHE says otherwise.
const DefaultCacheDir = "/var/cache/meshdns/realstack"

// Paths are the cached binaries and the Istio CRD manifest.
type Paths struct {
	Etcd           string
	KubeAPIServer  string
	PilotDiscovery string
	IstioCRDs      string // crd-all.gen.yaml from the same istio.io/istio version
}

// CacheDir returns the cache directory: $MESHDNS_STACK_CACHE or DefaultCacheDir.
func CacheDir() string {
	if d := os.Getenv("MESHDNS_STACK_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

// Binaries finds the cached binaries. The error names every missing file and how to build them.
func Binaries() (Paths, error) {
	c := CacheDir()
	p := Paths{
		Etcd:           filepath.Join(c, "etcd-"+EtcdVersion, "etcd"),
		KubeAPIServer:  filepath.Join(c, "kubernetes-"+KubeVersion, "kube-apiserver"),
		PilotDiscovery: filepath.Join(c, "pilot-discovery-"+IstioVersion, "pilot-discovery"),
		IstioCRDs:      filepath.Join(c, "pilot-discovery-"+IstioVersion, "crd-all.gen.yaml"),
	}
	var errs []error
	for _, f := range []string{p.Etcd, p.KubeAPIServer, p.PilotDiscovery, p.IstioCRDs} {
		fi, err := os.Stat(f)
		switch {
		case err != nil:
			errs = append(errs, err)
		case fi.Mode()&0o111 == 0 && filepath.Ext(f) != ".yaml":
			errs = append(errs, &fs.PathError{Op: "exec", Path: f, Err: fs.ErrPermission})
		}
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("real control-plane binaries missing (build them with `bash test/realstack/build.sh`, ~20 min cold; cache %s): %w",
			c, errors.Join(errs...))
	}
	return p, nil
}

// NodePaths are the cached binaries of a node (see StartNode): the Kubernetes ones from the same
// k8s.io/kubernetes build as kube-apiserver, and the directory of the CNI plugins.
type NodePaths struct {
	Kubelet           string
	KubeProxy         string
	ControllerManager string
	Scheduler         string
	Kubectl           string
	CNIDir            string // bridge, host-local, loopback, portmap
}

// NodeBinaries finds the cached node binaries. The error names every missing file and how to build them.
func NodeBinaries() (NodePaths, error) {
	c := CacheDir()
	kube := filepath.Join(c, "kubernetes-"+KubeVersion)
	p := NodePaths{
		Kubelet:           filepath.Join(kube, "kubelet"),
		KubeProxy:         filepath.Join(kube, "kube-proxy"),
		ControllerManager: filepath.Join(kube, "kube-controller-manager"),
		Scheduler:         filepath.Join(kube, "kube-scheduler"),
		Kubectl:           filepath.Join(kube, "kubectl"),
		CNIDir:            filepath.Join(c, "cni-plugins-"+CNIVersion),
	}
	var errs []error
	files := []string{p.Kubelet, p.KubeProxy, p.ControllerManager, p.Scheduler, p.Kubectl}
	for _, plugin := range []string{"bridge", "host-local", "loopback", "portmap"} {
		files = append(files, filepath.Join(p.CNIDir, plugin))
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		switch {
		case err != nil:
			errs = append(errs, err)
		case fi.Mode()&0o111 == 0:
			errs = append(errs, &fs.PathError{Op: "exec", Path: f, Err: fs.ErrPermission})
		}
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("node binaries missing (build them with `bash test/realstack/build.sh`; cache %s): %w", c, errors.Join(errs...))
	}
	return p, nil
}

// Istioctl finds the cached istioctl, built by build.sh from the same istio.io/istio version as
// pilot-discovery (so its `x workload entry configure` writes what that istiod expects). Apart from
// Binaries so that the tests which do not onboard a VM do not need it.
func Istioctl() (string, error) {
	c := CacheDir()
	p := filepath.Join(c, "istioctl-"+IstioVersion, "istioctl")
	fi, err := os.Stat(p)
	switch {
	case err != nil:
	case fi.Mode()&0o111 == 0:
		err = &fs.PathError{Op: "exec", Path: p, Err: fs.ErrPermission}
	default:
		return p, nil
	}
	return p, fmt.Errorf("istioctl missing (build it with `bash test/realstack/build.sh`, a few minutes after pilot-discovery; cache %s): %w", c, err)
}
