package nodecache

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Compat runs the binary the way NodeLocal DNSCache's manifests run k8s-dns-node-cache: with its
// flags (-localip, -upstreamsvc, -basecorefile, ...) and a Corefile template holding
// __PILLAR__LOCAL__DNS__, __PILLAR__DNS__SERVER__, __PILLAR__CLUSTER__DNS__ and
// __PILLAR__UPSTREAM__SERVERS__. Generate fills the template in and adds the nodecache directive
// the flags describe, so that an existing DaemonSet and ConfigMap carry over unchanged.
type Compat struct {
	LocalIPs       []netip.Addr
	UpstreamSvc    string
	BaseCorefile   string
	Corefile       string
	SetupInterface bool
	SetupIPTables  bool
	SkipTeardown   bool
	HealthPort     int
	Interface      string
	SyncInterval   time.Duration
	ResolvConf     string // where the upstream servers come from
}

// compatFlags are k8s-dns-node-cache's flags; true marks the boolean ones.
var compatFlags = map[string]bool{
	"localip": false, "upstreamsvc": false, "basecorefile": false, "corefile": false,
	"setupinterface": true, "setupiptables": true, "skipteardown": true,
	"health-port": false, "interfacename": false, "syncinterval": false, "kubednscm": false,
}

// SplitArgs takes k8s-dns-node-cache's flags out of args. It returns them as a Compat, nil when
// -localip is not among them (the ordinary CoreDNS command line), and the rest of args for CoreDNS.
func SplitArgs(args []string) (*Compat, []string, error) {
	c := &Compat{
		UpstreamSvc:    "kube-dns",
		BaseCorefile:   "/etc/coredns/Corefile.base",
		Corefile:       "/etc/Corefile",
		SetupInterface: true,
		SetupIPTables:  true,
		HealthPort:     DefaultHealthPort,
		Interface:      DefaultInterface,
		SyncInterval:   DefaultCheckInterval,
		ResolvConf:     "/etc/resolv.conf",
	}
	var rest []string
	localIP := false
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		isBool, ok := compatFlags[name]
		if !strings.HasPrefix(arg, "-") || !ok {
			rest = append(rest, arg)
			continue
		}
		if !hasValue {
			if isBool {
				value = "true"
			} else {
				if i+1 == len(args) {
					return nil, nil, fmt.Errorf("flag -%s needs a value", name)
				}
				i++
				value = args[i]
			}
		}
		if err := c.set(name, value); err != nil {
			return nil, nil, fmt.Errorf("flag -%s: %w", name, err)
		}
		localIP = localIP || name == "localip"
	}
	if !localIP {
		return nil, args, nil
	}
	return c, rest, nil
}

func (c *Compat) set(name, value string) error {
	var err error
	switch name {
	case "localip":
		c.LocalIPs = nil
		for _, s := range strings.Split(value, ",") {
			ip, perr := netip.ParseAddr(strings.TrimSpace(s))
			if perr != nil {
				return fmt.Errorf("%q is not an IP address", s)
			}
			c.LocalIPs = append(c.LocalIPs, ip.Unmap())
		}
	case "upstreamsvc":
		c.UpstreamSvc = value
	case "basecorefile":
		c.BaseCorefile = value
	case "corefile":
		c.Corefile = value
	case "setupinterface":
		c.SetupInterface, err = strconv.ParseBool(value)
	case "setupiptables":
		c.SetupIPTables, err = strconv.ParseBool(value)
	case "skipteardown":
		c.SkipTeardown, err = strconv.ParseBool(value)
	case "health-port":
		c.HealthPort, err = strconv.Atoi(value)
		if err == nil && (c.HealthPort < 1 || c.HealthPort > 65535) {
			err = fmt.Errorf("%d is not a port", c.HealthPort)
		}
	case "interfacename":
		c.Interface = value
	case "syncinterval":
		c.SyncInterval, err = time.ParseDuration(value)
	case "kubednscm":
		// Stub domains from kube-dns's ConfigMap: write them in the Corefile instead.
		err = fmt.Errorf("not supported: put stub domains in the Corefile as server blocks")
	}
	return err
}

// serviceHostEnv is the variable Kubernetes sets to the cluster IP of Service svc in the pod's
// namespace (kube-dns-upstream -> KUBE_DNS_UPSTREAM_SERVICE_HOST).
func serviceHostEnv(svc string) string {
	return strings.ToUpper(strings.ReplaceAll(svc, "-", "_")) + "_SERVICE_HOST"
}

// serverBlockStart finds the first line that opens a server block.
var serverBlockStart = regexp.MustCompile(`(?m)^[^#\s][^#\n]*\{[ \t]*$`)

// Generate reads the template and returns the Corefile to run.
func (c *Compat) Generate() ([]byte, error) {
	base, err := os.ReadFile(c.BaseCorefile)
	if err != nil {
		return nil, fmt.Errorf("the Corefile template: %w", err)
	}
	out := string(base)
	var ips []string
	for _, ip := range c.LocalIPs {
		ips = append(ips, ip.String())
	}
	if len(ips) > 0 {
		out = strings.ReplaceAll(out, "__PILLAR__LOCAL__DNS__", ips[0])
	}
	if len(ips) > 1 {
		out = strings.ReplaceAll(out, "__PILLAR__DNS__SERVER__", ips[1])
	}
	if strings.Contains(out, "__PILLAR__CLUSTER__DNS__") {
		env := serviceHostEnv(c.UpstreamSvc)
		ip := os.Getenv(env)
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("__PILLAR__CLUSTER__DNS__: $%s (the cluster IP of Service %s) is %q, not an IP address", env, c.UpstreamSvc, ip)
		}
		out = strings.ReplaceAll(out, "__PILLAR__CLUSTER__DNS__", ip)
	}
	if strings.Contains(out, "__PILLAR__UPSTREAM__SERVERS__") {
		servers, err := nameservers(c.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("__PILLAR__UPSTREAM__SERVERS__: %w", err)
		}
		out = strings.ReplaceAll(out, "__PILLAR__UPSTREAM__SERVERS__", strings.Join(servers, " "))
	}
	if m := regexp.MustCompile(`__PILLAR__[A-Z_]+__`).FindString(out); m != "" {
		return nil, fmt.Errorf("the Corefile template %s holds %s, which nothing fills in", c.BaseCorefile, m)
	}
	if !regexp.MustCompile(`(?m)^\s*nodecache\b`).MatchString(out) {
		loc := serverBlockStart.FindStringIndex(out)
		if loc == nil {
			return nil, fmt.Errorf("the Corefile template %s has no server block", c.BaseCorefile)
		}
		out = out[:loc[1]] + "\n" + c.directive() + out[loc[1]:]
	}
	return []byte(out), nil
}

// directive is the nodecache directive the flags describe.
func (c *Compat) directive() string {
	onOff := map[bool]string{true: "on", false: "off"}
	var ips []string
	for _, ip := range c.LocalIPs {
		ips = append(ips, ip.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    nodecache %s {\n", strings.Join(ips, " "))
	fmt.Fprintf(&b, "        interface %s\n", c.Interface)
	fmt.Fprintf(&b, "        health_port %d\n", c.HealthPort)
	fmt.Fprintf(&b, "        setup_interface %s\n", onOff[c.SetupInterface])
	fmt.Fprintf(&b, "        setup_iptables %s\n", onOff[c.SetupIPTables])
	fmt.Fprintf(&b, "        check_interval %s\n", c.SyncInterval)
	if c.SkipTeardown {
		b.WriteString("        skip_teardown\n")
	}
	b.WriteString("    }")
	return b.String()
}

// nameservers lists the nameservers of a resolv.conf.
func nameservers(path string) ([]string, error) {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", path)
	}
	return cfg.Servers, nil
}

// Write generates the Corefile and writes it (atomically) if it differs from what is there, and
// reports whether it did.
func (c *Compat) Write() (bool, error) {
	data, err := c.Generate()
	if err != nil {
		return false, err
	}
	if old, err := os.ReadFile(c.Corefile); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.Corefile), ".Corefile-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp.Name(), c.Corefile)
}

// Watch regenerates the Corefile every SyncInterval, as k8s-dns-node-cache does, so that a changed
// ConfigMap (or upstream) reaches CoreDNS through its reload plugin.
func (c *Compat) Watch() {
	if c.SyncInterval <= 0 {
		return
	}
	for range time.Tick(c.SyncInterval) {
		changed, err := c.Write()
		switch {
		case err != nil:
			log.Errorf("regenerating %s from %s: %v", c.Corefile, c.BaseCorefile, err)
		case changed:
			log.Infof("regenerated %s from %s", c.Corefile, c.BaseCorefile)
		}
	}
}
