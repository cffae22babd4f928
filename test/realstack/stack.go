package realstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/need"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// IstiodServerName is a name in the certificate istiod serves on its secure gRPC port (signed by the
// root IstiodRootCert returns). Out of cluster istiod also puts 127.0.0.1 in it, so verifying the
// address IstiodSecureGRPC works too.
const IstiodServerName = "istiod.istio-system.svc"

// IstioNamespace is istiod's namespace (and the mesh root namespace).
const IstioNamespace = "istio-system"

// Options tune Start. The zero value runs everything.
type Options struct {
	// WithoutIstiod starts etcd and kube-apiserver only (for Kubernetes-source tests).
	WithoutIstiod bool
	// MeshConfig is YAML appended to the mesh config istiod reads; trustDomain, rootNamespace and
	// defaultConfig.discoveryAddress are already set, so add other top-level keys only.
	MeshConfig string
	// IstiodEnv is extra KEY=VALUE environment for pilot-discovery (PILOT_* feature flags, ...).
	IstiodEnv []string
}

// Stack is a running etcd + kube-apiserver (+ istiod) on 127.0.0.1. Everything is stopped and its
// directory removed when the test ends (set MESHDNS_STACK_KEEP=1 to keep the directory).
type Stack struct {
	Dir        string       // temporary directory: data, certificates, configs and <process>.log files
	Kubeconfig string       // admin kubeconfig (bearer token, verified TLS)
	APIServer  string       // https://127.0.0.1:port
	AdminToken string       // bearer token in group system:masters
	Config     *rest.Config // admin client config
	Kube       *kubernetes.Clientset
	Dynamic    *dynamic.DynamicClient

	IstiodGRPC       string // plaintext, unauthenticated xDS (istiod's 15010)
	IstiodSecureGRPC string // TLS xDS (15012): client certificate or Kubernetes JWT, see IstioToken
	IstiodHTTP       string // /ready, /debug/* (8080)
	IstiodMonitoring string // /metrics (15014)
	IstiodDir        string // istiod's working directory

	t     testing.TB
	paths Paths
	opts  Options

	mu     sync.Mutex
	etcd   *process
	kapi   *process
	istiod *process
	kcm    *process // kube-controller-manager and kube-scheduler, once StartControllers ran
	sched  *process
	ports  map[string]int
}

// Start runs the stack and returns when istiod is ready (about 10 s). When the binaries are missing it
// skips the test, or fails it if MESHDNS_REQUIRE_STACK=1.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	paths, err := Binaries()
	if err != nil {
		need.Skip(t, need.Stack, err.Error())
	}
	dir, err := os.MkdirTemp("", "realstack-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Stack{Dir: dir, t: t, paths: paths, opts: opts}
	t.Cleanup(s.cleanup)

	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := s.start(ctx); err != nil {
		t.Fatalf("realstack: %v", err)
	}
	t.Logf("realstack: up in %v (%s)", time.Since(begin).Round(time.Millisecond), dir)
	return s
}

func (s *Stack) start(ctx context.Context) error {
	names := []string{"etcd", "etcd-peer", "apiserver", "istiod-http", "istiod-https", "istiod-grpc", "istiod-grpcs", "istiod-monitoring"}
	ports, err := freePorts(len(names))
	if err != nil {
		return err
	}
	s.ports = map[string]int{}
	for i, n := range names {
		s.ports[n] = ports[i]
	}
	// Each phase's time goes to the test log: start-up is most of a real-stack test's cost.
	var times []string
	phase := func(name string, f func() error) error {
		begin := time.Now()
		err := f()
		times = append(times, fmt.Sprintf("%s %v", name, time.Since(begin).Round(time.Millisecond)))
		return err
	}
	defer func() { s.t.Logf("realstack: %s", strings.Join(times, ", ")) }()
	if err := phase("etcd", func() error { return s.startEtcd(ctx) }); err != nil {
		return err
	}
	if err := phase("kube-apiserver", func() error { return s.startAPIServer(ctx) }); err != nil {
		return err
	}
	err = phase("CRDs+namespaces", func() error {
		if err := s.applyCRDs(ctx); err != nil {
			return fmt.Errorf("CRDs: %w", err)
		}
		for _, ns := range []string{"default", IstioNamespace} {
			if err := s.EnsureNamespace(ns); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || s.opts.WithoutIstiod {
		return err
	}
	if err := s.prepareIstiod(); err != nil {
		return err
	}
	return phase("istiod", func() error { return s.startIstiod(ctx) })
}

func (s *Stack) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", s.ports["etcd"])
	peer := fmt.Sprintf("http://127.0.0.1:%d", s.ports["etcd-peer"])
	p, err := s.spawn("etcd", s.paths.Etcd, s.Dir, minimalEnv(s.Dir),
		"--name=realstack",
		"--data-dir="+filepath.Join(s.Dir, "etcd"),
		"--unsafe-no-fsync", // test data: durability is not wanted, speed is
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=realstack="+peer)
	if err != nil {
		return err
	}
	s.etcd = p
	return waitFor(ctx, p, func() error { return httpOK(ctx, http.DefaultClient, client+"/health", "") })
}

func (s *Stack) startAPIServer(ctx context.Context) error {
	certDir := filepath.Join(s.Dir, "apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	pub, key, err := serviceAccountKeys()
	if err != nil {
		return err
	}
	s.AdminToken = randomHex(16)
	files := map[string][]byte{
		"sa.pub":     pub,
		"sa.key":     key,
		"tokens.csv": []byte(s.AdminToken + ",admin,admin-uid,system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return err
		}
	}
	s.APIServer = fmt.Sprintf("https://127.0.0.1:%d", s.ports["apiserver"])
	if err := s.spawnAPIServer(ctx); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return err
	}
	s.Config = &rest.Config{
		Host:            s.APIServer,
		BearerToken:     s.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		QPS:             200, // tests create objects in bursts; client-side throttling only adds noise
		Burst:           400,
	}
	if s.Kube, err = kubernetes.NewForConfig(s.Config); err != nil {
		return err
	}
	if s.Dynamic, err = dynamic.NewForConfig(s.Config); err != nil {
		return err
	}
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	kubeconfig := adminKubeconfig(s.APIServer, ca, s.AdminToken, "")
	return os.WriteFile(s.Kubeconfig, []byte(kubeconfig), 0o600)
}

// spawnAPIServer runs kube-apiserver on the stack's port with the files startAPIServer wrote (its
// serving certificate is made on the first start and reused after) and waits until it is ready.
func (s *Stack) spawnAPIServer(ctx context.Context) error {
	certDir := filepath.Join(s.Dir, "apiserver")
	port := s.ports["apiserver"]
	p, err := s.spawn("kube-apiserver", s.paths.KubeAPIServer, s.Dir, minimalEnv(s.Dir),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", s.ports["etcd"]),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir, // self-signed serving cert (CA bundled in apiserver.crt), SANs include 127.0.0.1
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(certDir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(certDir, "sa.key"),
		"--token-auth-file="+filepath.Join(certDir, "tokens.csv"),
		"--authorization-mode=RBAC",
		// Dual stack, so that tests can give Services IPv6 cluster IPs too.
		"--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112",
		// The default reconciler refuses a loopback advertise address and exits.
		"--endpoint-reconciler-type=none",
		// A node's kubelet (StartNode) is reached at its InternalIP: its hostname resolves nowhere.
		"--kubelet-preferred-address-types=InternalIP")
	if err != nil {
		return err
	}
	s.kapi = p
	insecureClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return waitFor(ctx, p, func() error { return httpOK(ctx, insecureClient, s.APIServer+"/readyz", s.AdminToken) })
}

// StopAPIServer kills kube-apiserver, as in a crash or a partition: its clients' connections reset.
// StartAPIServer brings it back on the same port, with the same certificate and tokens.
func (s *Stack) StopAPIServer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kapi.kill()
	s.kapi = nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer and waits until it is ready.
func (s *Stack) StartAPIServer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kapi != nil && !s.kapi.exited() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.spawnAPIServer(ctx)
}

func (s *Stack) prepareIstiod() error {
	s.IstiodDir = filepath.Join(s.Dir, "istiod")
	if err := os.MkdirAll(s.IstiodDir, 0o700); err != nil {
		return err
	}
	s.IstiodHTTP = fmt.Sprintf("127.0.0.1:%d", s.ports["istiod-http"])
	s.IstiodGRPC = fmt.Sprintf("127.0.0.1:%d", s.ports["istiod-grpc"])
	s.IstiodSecureGRPC = fmt.Sprintf("127.0.0.1:%d", s.ports["istiod-grpcs"])
	s.IstiodMonitoring = fmt.Sprintf("127.0.0.1:%d", s.ports["istiod-monitoring"])
	mesh := fmt.Sprintf(`trustDomain: cluster.local
rootNamespace: %s
defaultConfig:
  discoveryAddress: %s
`, IstioNamespace, s.IstiodSecureGRPC) + s.opts.MeshConfig
	return os.WriteFile(filepath.Join(s.Dir, "mesh.yaml"), []byte(mesh), 0o600)
}

func (s *Stack) startIstiod(ctx context.Context) error {
	env := append(minimalEnv(s.IstiodDir),
		"POD_NAMESPACE="+IstioNamespace,
		"POD_NAME=istiod-local",
		"REVISION=default",
		// No webhooks exist to patch: without these istiod waits for them.
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
		"INJECTION_WEBHOOK_CONFIG_NAME=",
	)
	env = append(env, s.opts.IstiodEnv...)
	// The working directory matters: istiod resolves ./etc/cacerts, ./var/run/secrets/... against it.
	p, err := s.spawn("istiod", s.paths.PilotDiscovery, s.IstiodDir, env,
		"discovery",
		"--kubeconfig="+s.Kubeconfig,
		"--meshConfig="+filepath.Join(s.Dir, "mesh.yaml"),
		"--httpAddr="+s.IstiodHTTP,
		fmt.Sprintf("--httpsAddr=127.0.0.1:%d", s.ports["istiod-https"]),
		"--grpcAddr="+s.IstiodGRPC,
		"--secureGRPCAddr="+s.IstiodSecureGRPC,
		"--monitoringAddr="+s.IstiodMonitoring)
	if err != nil {
		return err
	}
	s.istiod = p
	return waitFor(ctx, p, func() error { return httpOK(ctx, http.DefaultClient, "http://"+s.IstiodHTTP+"/ready", "") })
}

// StopIstiod kills istiod (SIGKILL: its clients see the connection reset, as in a crash) and waits
// for it to exit. StartIstiod brings it back on the same ports.
func (s *Stack) StopIstiod() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.istiod.kill()
	s.istiod = nil
}

// TerminateIstiod stops istiod the polite way (SIGTERM, as in a rolling update: it closes its streams
// before exiting), killing it if it is still there after 30 s.
func (s *Stack) TerminateIstiod() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.istiod; p != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.kill()
		}
	}
	s.istiod = nil
}

// StartIstiod starts istiod again on the same ports and waits until it is ready. Its CA lives in a
// Secret, so the root certificate stays the same across restarts.
func (s *Stack) StartIstiod() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.WithoutIstiod {
		return errors.New("realstack: started WithoutIstiod")
	}
	if s.istiod != nil && !s.istiod.exited() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.startIstiod(ctx)
}

// IstiodRunning reports whether istiod is running.
func (s *Stack) IstiodRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.istiod != nil && !s.istiod.exited()
}

func (s *Stack) cleanup() {
	s.mu.Lock()
	// Reverse start order, so nothing logs about a dependency that vanished first.
	for _, p := range []*process{s.sched, s.kcm, s.istiod, s.kapi, s.etcd} {
		p.kill()
	}
	s.mu.Unlock()
	if s.t.Failed() {
		s.dumpLogs()
	}
	if os.Getenv("MESHDNS_STACK_KEEP") == "1" {
		s.t.Logf("realstack: MESHDNS_STACK_KEEP=1: kept %s", s.Dir)
		return
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		s.t.Logf("realstack: %v", err)
	}
}

// dumpLogs logs the tail of every process log.
func (s *Stack) dumpLogs() {
	const tail = 24 << 10
	logs, _ := filepath.Glob(filepath.Join(s.Dir, "*.log"))
	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cut := ""
		if len(data) > tail {
			data, cut = data[len(data)-tail:], " (tail)"
		}
		s.t.Logf("==== %s%s ====\n%s", filepath.Base(f), cut, data)
	}
}

// process is a child process whose output goes to <Dir>/<name>.log (appended across restarts).
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done closes
}

func (s *Stack) spawn(name, bin, dir string, env []string, args ...string) (*process, error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	fmt.Fprintf(f, "==== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls ready until it succeeds, p exits, or ctx ends.
func waitFor(ctx context.Context, p *process, ready func() error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v (see %s.log)", p.name, p.err, p.name)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v", p.name, err)
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, c *http.Client, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// freePorts reserves n distinct loopback ports by listening on them all at once, then frees them.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// minimalEnv is the environment of every child: nothing from the test's own environment (KUBECONFIG,
// ISTIO_*, PILOT_* there would change what the binaries do).
func minimalEnv(home string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	return []string{"PATH=" + path, "HOME=" + home, "TMPDIR=" + os.TempDir()}
}

func serviceAccountKeys() (pub, key []byte, err error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	pub = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	key = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return pub, key, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// adminKubeconfig is a kubeconfig for server with the admin token, verified against ca; serverName,
// when set, is the name the serving certificate is checked for (a node reaches the API server at an
// address its certificate does not name).
func adminKubeconfig(server string, ca []byte, token, serverName string) string {
	tlsName := ""
	if serverName != "" {
		tlsName = "\n    tls-server-name: " + serverName
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: realstack
  cluster:
    server: %s
    certificate-authority-data: %s%s
users:
- name: admin
  user:
    token: %s
contexts:
- name: realstack
  context:
    cluster: realstack
    user: admin
current-context: realstack
`, server, base64.StdEncoding.EncodeToString(ca), tlsName, token)
}
