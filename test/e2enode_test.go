//go:build linux

package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshdns/meshdns/test/need"
	"github.com/meshdns/meshdns/test/realstack"
	"github.com/miekg/dns"
)

// The images the node-local end-to-end test imports into the node's containerd.
const (
	e2eImage     = "meshdns.local/meshdns:e2e"
	e2eNextImage = "meshdns.local/meshdns:e2e-next" // the same bits: an image change for the rollout
	clientsImage = "meshdns.local/clients:e2e"
	externalName = "external.example."
	externalIP   = "192.0.2.80"
)

// e2eReport prints a PASS or FAIL line for each check, as `make e2e-node` shows them, and the count
// at the end; a FAIL also fails the test.
type e2eReport struct {
	t              *testing.T
	passed, failed int
}

func (r *e2eReport) check(name string, err error) {
	r.t.Helper()
	if err != nil {
		r.failed++
		fmt.Printf("FAIL %s: %v\n", name, err)
		r.t.Errorf("%s: %v", name, err)
		return
	}
	r.passed++
	fmt.Printf("PASS %s\n", name)
}

func (r *e2eReport) close() { fmt.Printf("%d passed, %d failed\n", r.passed, r.failed) }

// TestNodeLocalE2E deploys the node-local resolver on a real node as a user does: the image built by
// deploy/image and imported into the node's containerd, deploy/kubernetes/overlays/kubernetes applied
// with kubectl (only the image substituted), the kubelet's clusterDNS on 169.254.20.10, kube-dns a
// CoreDNS Deployment of our own binary behind its Service; then real clients in pods of two
// namespaces (busybox's nslookup, glibc's and musl's getaddrinfo, Go's resolver) resolve every name
// form through it, the figures are taken, and the DaemonSet is rolled twice under load.
func TestNodeLocalE2E(t *testing.T) {
	if os.Getenv("MESHDNS_E2E_NODE") == "" {
		t.Skip("set MESHDNS_E2E_NODE=1 (make e2e-node) to deploy on a real node")
	}
	need.Tool(t, "musl-gcc")
	need.Tool(t, "gcc")
	r := &e2eReport{t: t}
	defer r.close()
	dir := t.TempDir()

	// Images, before the node starts: the node image as make image writes it, and the clients.
	mesh := filepath.Join(dir, "meshdns.tar")
	next := filepath.Join(dir, "meshdns-next.tar")
	for ref, out := range map[string]string{e2eImage: mesh, e2eNextImage: next} {
		cmd := exec.Command("go", "run", "./deploy/image", "-bin", staticBinary(t), "-ref", ref, "-o", out)
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go run ./deploy/image: %v\n%s", err, b)
		}
	}
	clients := clientsArchive(t, dir)

	stack := realstack.Start(t, realstack.Options{IstiodEnv: []string{"PILOT_ENABLE_AMBIENT=true"}}) // NDS and workload discovery
	node := realstack.StartNode(t, stack, realstack.NodeOptions{Images: []string{mesh, next, clients}})
	startE2EUpstream(t, node.HostIP.String())

	// The cluster around meshdns: kube-dns, two namespaces with a Service, a headless Service with a
	// named pod, a ServiceEntry, and a client pod in each namespace.
	if err := node.Apply(strings.ReplaceAll(readFile(t, "testdata/e2e-node/kube-dns.yaml"), "IMAGE", e2eImage)); err != nil {
		t.Fatalf("kube-dns: %v", err)
	}
	if err := node.Apply(strings.ReplaceAll(readFile(t, "testdata/e2e-node/workloads.yaml"), "IMAGE", clientsImage)); err != nil {
		t.Fatalf("workloads: %v", err)
	}
	for _, w := range []struct{ ns, sel string }{{"kube-system", "k8s-app=kube-dns"}, {"shop", "app=client"}, {"web", "app=client"}, {"shop", "app=db"}} {
		if _, err := node.WaitPods(w.ns, w.sel, 1, 3*time.Minute); err != nil {
			t.Fatalf("pods %s in %s: %v", w.sel, w.ns, err)
		}
	}
	cartIP := kubectlJSONPath(t, node, "-n", "shop", "get", "service", "cart", "-o", "jsonpath={.spec.clusterIP}")
	dbIP := kubectlJSONPath(t, node, "-n", "shop", "get", "pod", "db-0", "-o", "jsonpath={.status.podIP}")
	kubeDNS := kubectlJSONPath(t, node, "-n", "kube-system", "get", "service", "kube-dns", "-o", "jsonpath={.spec.clusterIP}")

	// The manifests as they are, the image substituted by kustomize.
	applied := time.Now()
	overlay := e2eOverlay(t, dir, "kubernetes")
	if out, err := node.Kubectl("apply", "-k", overlay); err != nil {
		t.Fatalf("kubectl apply -k deploy/kubernetes/overlays/kubernetes: %v\n%s", err, out)
	}
	meshFirst, err := firstAnswer(node, "shop", "cart.shop.svc.cluster.local", applied)
	err = whyNoAnswer(node, err)
	r.check("the DaemonSet's pod answers a pod through the kubelet's clusterDNS", err)
	if err != nil {
		t.Fatalf("%v\n%s", err, node.Diagnose("kube-system", ""))
	}
	timeline := meshdnsPodTimeline(t, node, applied)

	podIPName := strings.ReplaceAll(dbIP, ".", "-") + ".shop.pod.cluster.local"
	type lookup struct {
		ns, name, want string // want "" means: must not resolve
	}
	// Names that only the search list makes mesh names: not asked of busybox's nslookup, which uses
	// none (it asks db-0.db. as it is, and any server says NXDOMAIN).
	viaSearch := map[string]bool{"db-0.db": true}
	lookups := []lookup{
		{"shop", "cart", cartIP},
		{"shop", "cart.shop", cartIP},
		{"web", "cart.shop", cartIP},
		{"shop", "cart.shop.svc.cluster.local", cartIP}, // four dots: the search list first, cart.shop.svc.cluster.local.shop.svc.cluster.local
		{"web", "cart.shop.svc.cluster.local", cartIP},
		{"shop", "db-0.db", dbIP},
		{"web", "db-0.db.shop", dbIP},
		{"shop", "api.payments.example", "240.240.0.5"},
		{"web", "api.payments.example", "240.240.0.5"},
		{"shop", "private.shop.example", "240.240.0.6"},
		{"web", "private.shop.example", ""}, // exported to shop only
		{"shop", strings.TrimSuffix(externalName, "."), externalIP},
		{"web", podIPName, dbIP}, // not a mesh name: meshdns passes it on to kube-dns
		{"web", "cart", ""},      // the shop namespace's bare name is not web's
	}
	clientsCmd := map[string][]string{
		"busybox nslookup":  {"/bin/nslookup"},
		"glibc getaddrinfo": {"/resolve-glibc"},
		"musl getaddrinfo":  {"/resolve-musl"},
		"Go resolver":       {"/goresolve"},
	}
	// resolve has client look l.name up in a pod of l.ns and checks the answer, or that there is none;
	// a failure quotes the meshdns pod's last log lines.
	resolve := func(phase, client string, l lookup) {
		name := fmt.Sprintf("%s%s in %s: %s", phase, client, l.ns, l.name)
		out, err := node.Kubectl(append([]string{"exec", "-n", l.ns, "client", "--"}, append(clientsCmd[client], l.name)...)...)
		if l.want == "" {
			name += " does not resolve"
			if err == nil && answered(client, out) {
				err = fmt.Errorf("it did: %s", out)
			} else {
				err = nil
			}
		} else if name += " = " + l.want; err == nil && !strings.Contains(out, l.want) {
			err = fmt.Errorf("%s", strings.TrimSpace(out))
		}
		if err != nil {
			logs, _ := node.Kubectl("logs", "-n", "kube-system", "-l", "k8s-app=meshdns", "--tail=20")
			err = fmt.Errorf("%v\nthe meshdns pod's last log lines:\n%s", err, logs)
		}
		r.check(name, err)
	}
	for _, client := range []string{"busybox nslookup", "glibc getaddrinfo", "musl getaddrinfo", "Go resolver"} {
		for _, l := range lookups {
			if viaSearch[l.name] && client == "busybox nslookup" {
				continue
			}
			resolve("", client, l)
		}
	}

	// Figures: apply to first answer, the DaemonSet pod's memory, capacity through the node-local
	// address and straight to kube-dns from a pod, the same names.
	rss, rssErr := meshdnsRSS()
	r.check("the meshdns pod's resident memory is read", rssErr)
	qps := map[string]float64{}
	for what, server := range map[string]string{"node-local": "169.254.20.10:53", "kube-dns": net.JoinHostPort(kubeDNS, "53")} {
		out, err := node.Kubectl("exec", "-n", "shop", "client", "--", "/dnsload", "-server", server, "-duration", "5s", "-concurrency", "8",
			"cart.shop.svc.cluster.local", "db.shop.svc.cluster.local")
		var q float64
		if err == nil {
			_, err = fmt.Sscanf(out, "qps %f", &q)
		}
		qps[what] = q
		r.check("capacity from a pod through "+what, err)
	}
	figures := fmt.Sprintf("node-local on a real node (kubelet, containerd, kube-proxy; deploy/kubernetes/overlays/kubernetes): "+
		"kubectl apply to the first answer in a pod (asked every 0.5 s or so) %v (%s); the DaemonSet pod's RSS %d MiB; from a pod, 8 queries in flight for 5 s: "+
		"%.0f q/s through 169.254.20.10, %.0f q/s straight to the kube-dns Service (%.2fx)",
		meshFirst.Round(100*time.Millisecond), timeline, rss>>20, qps["node-local"], qps["kube-dns"], qps["node-local"]/max(qps["kube-dns"], 1))
	t.Log(figures)

	// Rollouts under load from a pod: a restart and an image change, surge-first as the DaemonSet
	// says. Not one query may fail.
	for _, roll := range []struct {
		name string
		args []string
	}{
		{"kubectl rollout restart", []string{"-n", "kube-system", "rollout", "restart", "daemonset/meshdns"}},
		{"an image change", []string{"-n", "kube-system", "set", "image", "daemonset/meshdns", "meshdns=" + e2eNextImage}},
	} {
		load := make(chan string, 1)
		go func() {
			out, err := node.Kubectl("exec", "-n", "shop", "client", "--", "/dnsload", "-server", "169.254.20.10:53", "-duration", "40s", "-rate", "500",
				"cart.shop.svc.cluster.local", "api.payments.example")
			if err != nil {
				out += err.Error()
			}
			load <- out
		}()
		time.Sleep(3 * time.Second)
		out, err := node.Kubectl(roll.args...)
		if err == nil {
			out, err = node.Kubectl("-n", "kube-system", "rollout", "status", "daemonset/meshdns", "--timeout=120s")
		}
		if err != nil {
			r.check(roll.name+" completes", fmt.Errorf("%v: %s\n%s", err, out, node.Diagnose("kube-system", "")))
			<-load
			continue
		}
		got := <-load
		var sent, failed int
		_, serr := fmt.Sscanf(got, "sent %d failed %d", &sent, &failed)
		if serr == nil && (failed > 0 || sent == 0) {
			serr = fmt.Errorf("%s", strings.TrimSpace(got))
		}
		r.check(fmt.Sprintf("%s under 500 q/s from a pod loses no query (%s)", roll.name, strings.TrimSpace(got)), serr)
		figures += fmt.Sprintf("; %s under 500 q/s: %s", roll.name, strings.TrimSpace(got))
	}

	// The nds overlay in its place: mesh names from istiod over TLS, a subscription per namespace
	// with a token requested for it, istiod reached as istiod.istio-system.svc:15012 (the stack's,
	// through a selector-less Service).
	if err := node.ExposeService(realstack.IstioNamespace, "istiod", map[int]string{15012: stack.IstiodSecureGRPC}); err != nil {
		t.Fatal(err)
	}
	overlay, applied = swapOverlay(t, node, overlay, dir, "nds")
	ndsFirst, err := firstAnswer(node, "web", "api.payments.example", applied)
	err = whyNoAnswer(node, err)
	r.check("the nds overlay answers a ServiceEntry host from istiod", err)
	if err != nil {
		t.Fatalf("%v\n%s", err, node.Diagnose("kube-system", ""))
	}
	figures += fmt.Sprintf("; nds overlay: kubectl apply to the first answer %v", ndsFirst.Round(100*time.Millisecond))
	for _, l := range []lookup{
		{"shop", "cart.shop.svc.cluster.local", cartIP},
		{"web", "cart.shop", cartIP},
		{"shop", "api.payments.example", "240.240.0.5"},
		{"shop", "private.shop.example", "240.240.0.6"}, // shop's own view, from its own subscription
		{"web", "private.shop.example", ""},
		{"shop", strings.TrimSuffix(externalName, "."), externalIP},
		{"web", podIPName, dbIP},
	} {
		resolve("nds overlay, ", "glibc getaddrinfo", l)
	}

	// The ambient overlay in its place: istiod's workload discovery, each client's namespace from
	// its own Workload.
	_, applied = swapOverlay(t, node, overlay, dir, "ambient")
	ambientFirst, err := firstAnswer(node, "shop", "cart", applied)
	err = whyNoAnswer(node, err)
	r.check("the ambient overlay answers a pod its own namespace's bare name, from istiod's workloads", err)
	if err != nil {
		t.Fatal(err)
	}
	figures += fmt.Sprintf("; ambient overlay: kubectl apply to the first answer %v", ambientFirst.Round(100*time.Millisecond))
	for _, client := range []string{"glibc getaddrinfo", "Go resolver"} {
		for _, l := range []lookup{
			{"shop", "cart", cartIP},
			{"web", "cart.shop", cartIP},
			{"web", "cart.shop.svc.cluster.local", cartIP},
			{"web", "db-0.db.shop", dbIP},
			{"shop", "api.payments.example", "240.240.0.5"},
			{"web", strings.TrimSuffix(externalName, "."), externalIP},
			{"web", "cart", ""},
		} {
			resolve("ambient overlay, ", client, l)
		}
	}
	recordResult(t, "e2e-node", figures)
}

// swapOverlay deletes the applied overlay (the kustomization at old), waits until its pods are gone
// (they end after their lameduck, the last one tearing the node's setup down), and applies
// deploy/kubernetes/overlays/<next> in its place, only the image changed; it returns the new
// kustomization and when it was applied.
func swapOverlay(t *testing.T, node *realstack.Node, old, dir, next string) (string, time.Time) {
	t.Helper()
	if out, err := node.Kubectl("delete", "-k", old, "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("kubectl delete -k %s: %v\n%s", old, err, out)
	}
	err := pollFor(time.Minute, func() error {
		out, err := node.Kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=meshdns", "-o", "name")
		if err == nil && strings.TrimSpace(out) != "" {
			err = fmt.Errorf("still there: %s", out)
		}
		return err
	})
	if err != nil {
		t.Fatalf("the pods of %s: %v", old, err)
	}
	kustomization := e2eOverlay(t, filepath.Join(dir, next), next)
	applied := time.Now()
	if out, err := node.Kubectl("apply", "-k", kustomization); err != nil {
		t.Fatalf("kubectl apply -k deploy/kubernetes/overlays/%s: %v\n%s", next, err, out)
	}
	return kustomization, applied
}

// answered says whether a client's output holds an address.
func answered(client, out string) bool {
	if client == "busybox nslookup" {
		return regexp.MustCompile(`(?m)^Address: \d`).MatchString(out) && !strings.Contains(out, "NXDOMAIN")
	}
	return !strings.Contains(out, "error:")
}

func kubectlJSONPath(t *testing.T, node *realstack.Node, args ...string) string {
	t.Helper()
	out, err := node.Kubectl(args...)
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("kubectl %s: %q %v", strings.Join(args, " "), out, err)
	}
	return strings.TrimSpace(out)
}

// firstAnswer asks 169.254.20.10 for name from the client pod of ns about every half second until it
// is answered, and returns how long after since that was. The timeout is short: a libc resolver that
// asked before anything served waits its own (5 s) before asking again, which would be measured
// instead of meshdns.
func firstAnswer(node *realstack.Node, ns, name string, since time.Time) (time.Duration, error) {
	var took time.Duration
	err := pollFor(2*time.Minute, func() error {
		out, err := node.Kubectl("exec", "-n", ns, "client", "--", "/dnsload", "-server", "169.254.20.10:53",
			"-duration", "100ms", "-rate", "20", "-timeout", "250ms", name)
		var sent, failed int
		if _, serr := fmt.Sscanf(out, "sent %d failed %d", &sent, &failed); err == nil && serr == nil && sent > 0 && failed == 0 {
			took = time.Since(since)
			return nil
		}
		return fmt.Errorf("%q %v", out, err)
	})
	return took, err
}

// whyNoAnswer adds to err, when there is one, what the meshdns pod's state says (a crash loop, a
// refused image, a probe failing: WaitPods names it) and its last log lines.
func whyNoAnswer(node *realstack.Node, err error) error {
	if err == nil {
		return nil
	}
	_, state := node.WaitPods("kube-system", "k8s-app=meshdns", 1, time.Second)
	logs, _ := node.Kubectl("logs", "-n", "kube-system", "-l", "k8s-app=meshdns", "--tail=30")
	return fmt.Errorf("no answer: %v\nthe meshdns pod: %v\nits last log lines:\n%s", err, state, logs)
}

// meshdnsPodTimeline says when, after applied, the meshdns pod was created, its container started and
// it became ready, as the API server recorded it (to the second).
func meshdnsPodTimeline(t *testing.T, node *realstack.Node, applied time.Time) string {
	out, err := node.Kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=meshdns", "-o",
		`jsonpath={.items[0].metadata.creationTimestamp} {.items[0].status.containerStatuses[0].state.running.startedAt} {.items[0].status.conditions[?(@.type=="Ready")].lastTransitionTime} {.items[0].status.conditions[?(@.type=="Ready")].status}`)
	f := strings.Fields(out)
	if err != nil || len(f) != 4 {
		return fmt.Sprintf("no timeline: %q %v", out, err)
	}
	if f[3] != "True" {
		f[2] = "" // not marked ready yet: its readiness probe had not run since it served
	}
	var at [3]string
	for i, v := range f[:3] {
		if v == "" {
			at[i] = "not yet"
			continue
		}
		ts, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Sprintf("no timeline: %q", out)
		}
		at[i] = ts.Sub(applied.Truncate(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("pod created at %s, its container started at %s, marked ready at %s, to the second", at[0], at[1], at[2])
}

// pollFor retries f until it passes or timeout ends, and returns its last error.
func pollFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// e2eOverlay copies deploy/ and puts a kustomization beside it that takes the named overlay as it
// is and changes only the image, as a user pointing it at their registry would.
func e2eOverlay(t *testing.T, dir, overlay string) string {
	t.Helper()
	root := filepath.Join(dir, "kustomize")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", "../deploy", filepath.Join(root, "deploy")).CombinedOutput(); err != nil {
		t.Fatalf("copying deploy/: %v: %s", err, out)
	}
	image := strings.Split(e2eImage, ":")
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- deploy/kubernetes/overlays/%s\nimages:\n- name: ghcr.io/meshdns/meshdns\n  newName: %s\n  newTag: %s\n",
		overlay, image[0], image[1])
	if err := os.WriteFile(filepath.Join(root, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// clientsArchive builds the client programs (glibc and musl getaddrinfo, Go's resolver, the load
// client) and writes an image of them beside Debian's static busybox.
func clientsArchive(t *testing.T, dir string) string {
	t.Helper()
	files := realstack.BusyboxFiles(t)
	build := func(out string, args ...string) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, realstack.ImageFile{Name: filepath.Base(out), Mode: 0o755, Data: data})
	}
	glibc, musl := filepath.Join(dir, "resolve-glibc"), filepath.Join(dir, "resolve-musl")
	build(glibc, "gcc", "-static", "-O2", "-o", glibc, "clients/resolve.c")
	build(musl, "musl-gcc", "-static", "-O2", "-o", musl, "clients/resolve.c")
	for _, prog := range []string{"goresolve", "dnsload"} {
		out := filepath.Join(dir, prog)
		build(out, "go", "build", "-o", out, "./clients/"+prog)
	}
	files = append(files, realstack.ImageFile{Name: "etc/nsswitch.conf", Data: []byte("hosts: files dns\n")})
	archive := filepath.Join(dir, "clients.tar")
	if err := realstack.WriteImageArchive(archive, clientsImage, realstack.ImageConfig{Env: []string{"PATH=/bin"}}, files); err != nil {
		t.Fatal(err)
	}
	return archive
}

// startE2EUpstream serves the node's resolvers (the kubelet's resolv.conf names addr): the external
// name, NXDOMAIN for everything else.
func startE2EUpstream(t *testing.T, addr string) {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if strings.EqualFold(q.Question[0].Name, externalName) && q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(externalName + " 30 IN A " + externalIP)
			m.Answer = append(m.Answer, rr)
		} else if !strings.EqualFold(q.Question[0].Name, externalName) {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	for _, netw := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: net.JoinHostPort(addr, "53"), Net: netw, Handler: h}
		started := make(chan error, 1)
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() { started <- srv.ListenAndServe() }()
		if err := <-started; err != nil {
			t.Fatalf("the node's upstream on %s/%s: %v", addr, netw, err)
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
}

// meshdnsRSS finds the node-local resolver's process (the one running the DaemonSet's Corefile) and
// reads its resident memory.
func meshdnsRSS() (int64, error) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmdline), "/etc/meshdns/Corefile") {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			continue
		}
		m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(status)
		if m == nil {
			continue
		}
		kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no process runs /etc/meshdns/Corefile")
}
