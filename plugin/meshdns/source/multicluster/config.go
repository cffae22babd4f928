package multicluster

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults of the multicluster options.
const (
	DefaultGatewayService = "istio-system/istio-eastwestgateway"
	DefaultGatewayPort    = 15443 // Istio's east-west gateway's mTLS passthrough port
	DefaultProbeInterval  = 2 * time.Second
	DefaultHoldDown       = 30 * time.Second
	DefaultLease          = 40 * time.Second
	DefaultRemoteSecrets  = "istio-system"
)

// DefaultVIPRanges are the ranges stable virtual IPs come from, as Istio's auto-allocation uses.
var DefaultVIPRanges = []netip.Prefix{netip.MustParsePrefix("240.240.0.0/16"), netip.MustParsePrefix("2001:2::/48")}

// Config is the multicluster part of a kubernetes block: the clusters watched besides this one, and
// how names of services exported from them are answered.
type Config struct {
	Network  string // this cluster's network
	Locality Locality
	Remotes  []Remote
	// RemoteSecrets, when set, is the namespace of this cluster whose Istio remote secrets (label
	// istio/multiCluster=true) add clusters.
	RemoteSecrets string
	Suffixes      []string // mesh suffixes answered ("global", "mesh"); none: multicluster names off
	ExportLabel   string   // a Service label that exports it, besides a ServiceExport: "key" or "key=value"
	GatewayNS     string   // the east-west gateway Service of each cluster
	GatewayName   string
	Gateways      map[string][]netip.Addr // cluster id -> configured gateway addresses
	GatewayPort   int
	VIPs          []netip.Prefix // non-empty: answer the mesh names with stable virtual IPs
	VIPState      string         // file the VIPs are kept in across restarts
	ProbeInterval time.Duration
	HoldDown      time.Duration
	Lease         time.Duration
}

// Remote is a cluster given in the Corefile.
type Remote struct {
	ID, Kubeconfig, Context string
	Network                 string
	Locality                Locality
}

// Locality is where a cluster runs.
type Locality struct{ Region, Zone string }

func (l Locality) String() string {
	if l.Zone == "" {
		return l.Region
	}
	return l.Region + "/" + l.Zone
}

func parseLocality(s string) (Locality, error) {
	region, zone, _ := strings.Cut(s, "/")
	if region == "" || strings.Contains(zone, "/") {
		return Locality{}, fmt.Errorf("%q is not REGION or REGION/ZONE", s)
	}
	return Locality{Region: region, Zone: zone}, nil
}

// properties are the options of the kubernetes block that are the multicluster source's.
var properties = []string{"network", "locality", "remote", "remote_secrets", "mesh_suffixes", "export_label", "gateway_service",
	"gateway", "gateway_port", "vips", "vip_state", "probe_interval", "hold_down", "lease"}

// Properties implements kubernetes.Extension: the options of the kubernetes block that are ours.
func (m *Config) Properties() []string { return properties }

// Repeatable implements kubernetes.Extension: the options given once per cluster.
func (m *Config) Repeatable() []string { return []string{"remote", "gateway"} }

// Enabled reports whether multicluster names are served.
func (m *Config) Enabled() bool { return len(m.Suffixes) > 0 }

// ParseProperty implements kubernetes.Extension: it reads one of Properties.
func (m *Config) ParseProperty(c *caddy.Controller, prop string, args []string) error {
	want := func(min, max int, what string) error {
		if len(args) < min || len(args) > max {
			return c.Errf("kubernetes: %s: want %s, got %d arguments", prop, what, len(args))
		}
		return nil
	}
	duration := func(dst *time.Duration) error {
		if err := want(1, 1, "a duration such as 2s"); err != nil {
			return err
		}
		d, err := time.ParseDuration(args[0])
		if err != nil || d <= 0 {
			return c.Errf("kubernetes: %s: %q is not a positive duration such as 2s", prop, args[0])
		}
		*dst = d
		return nil
	}
	clusterID := func(id string) error {
		if len(validation.IsDNS1123Label(id)) > 0 {
			return c.Errf("kubernetes: %s: cluster id %q is not a DNS label (it is part of names)", prop, id)
		}
		return nil
	}
	switch prop {
	case "network":
		if err := want(1, 1, "NETWORK"); err != nil {
			return err
		}
		m.Network = args[0]
	case "locality":
		if err := want(1, 1, "REGION[/ZONE]"); err != nil {
			return err
		}
		l, err := parseLocality(args[0])
		if err != nil {
			return c.Errf("kubernetes: locality: %v", err)
		}
		m.Locality = l
	case "remote":
		// remote ID KUBECONFIG [CONTEXT] [network NET] [locality REGION/ZONE]
		if err := want(2, 7, "ID KUBECONFIG [CONTEXT] [network NETWORK] [locality REGION/ZONE]"); err != nil {
			return err
		}
		r := Remote{ID: args[0], Kubeconfig: args[1]}
		if err := clusterID(r.ID); err != nil {
			return err
		}
		for _, o := range m.Remotes {
			if o.ID == r.ID {
				return c.Errf("kubernetes: remote: cluster %q given twice", r.ID)
			}
		}
		if _, err := os.Stat(r.Kubeconfig); err != nil {
			return c.Errf("kubernetes: remote %s: %v", r.ID, err)
		}
		rest := args[2:]
		if len(rest)%2 == 1 {
			r.Context, rest = rest[0], rest[1:]
		}
		for i := 0; i < len(rest); i += 2 {
			switch rest[i] {
			case "network":
				r.Network = rest[i+1]
			case "locality":
				l, err := parseLocality(rest[i+1])
				if err != nil {
					return c.Errf("kubernetes: remote %s: locality: %v", r.ID, err)
				}
				r.Locality = l
			default:
				return c.Errf("kubernetes: remote %s: unknown option %q: want network or locality", r.ID, rest[i])
			}
		}
		m.Remotes = append(m.Remotes, r)
	case "remote_secrets":
		if err := want(0, 1, "[NAMESPACE]"); err != nil {
			return err
		}
		m.RemoteSecrets = DefaultRemoteSecrets
		if len(args) == 1 {
			if len(validation.IsDNS1123Label(args[0])) > 0 {
				return c.Errf("kubernetes: remote_secrets: %q is not a namespace name", args[0])
			}
			m.RemoteSecrets = args[0]
		}
	case "mesh_suffixes":
		if err := want(1, 16, "SUFFIX..."); err != nil {
			return err
		}
		for _, s := range args {
			s = strings.ToLower(strings.Trim(s, "."))
			if err := table.ValidateHost(s); err != nil || strings.Contains(s, "*") {
				return c.Errf("kubernetes: mesh_suffixes: %q is not a domain name", s)
			}
			m.Suffixes = append(m.Suffixes, s)
		}
	case "export_label":
		if err := want(1, 1, "KEY or KEY=VALUE"); err != nil {
			return err
		}
		key, _, _ := strings.Cut(args[0], "=")
		if len(validation.IsQualifiedName(key)) > 0 {
			return c.Errf("kubernetes: export_label: %q is not a label key", key)
		}
		m.ExportLabel = args[0]
	case "gateway_service":
		if err := want(1, 1, "NAMESPACE/NAME"); err != nil {
			return err
		}
		ns, name, ok := strings.Cut(args[0], "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Label(name)) > 0 {
			return c.Errf("kubernetes: gateway_service: %q is not NAMESPACE/NAME", args[0])
		}
		m.GatewayNS, m.GatewayName = ns, name
	case "gateway":
		if err := want(2, 16, "CLUSTER ADDRESS..."); err != nil {
			return err
		}
		if err := clusterID(args[0]); err != nil {
			return err
		}
		if m.Gateways == nil {
			m.Gateways = map[string][]netip.Addr{}
		}
		if _, dup := m.Gateways[args[0]]; dup {
			return c.Errf("kubernetes: gateway: cluster %q given twice", args[0])
		}
		for _, s := range args[1:] {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return c.Errf("kubernetes: gateway %s: %q is not an IP address", args[0], s)
			}
			m.Gateways[args[0]] = append(m.Gateways[args[0]], a)
		}
	case "gateway_port":
		if err := want(1, 1, "PORT"); err != nil {
			return err
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 || n > 65535 {
			return c.Errf("kubernetes: gateway_port: %q is not a port", args[0])
		}
		m.GatewayPort = n
	case "vips":
		if err := want(0, 2, "[CIDR...]"); err != nil {
			return err
		}
		m.VIPs = DefaultVIPRanges
		if len(args) > 0 {
			m.VIPs = nil
			for _, s := range args {
				p, err := netip.ParsePrefix(s)
				if err != nil || p.Masked() != p || p.Bits() > p.Addr().BitLen()-2 {
					return c.Errf("kubernetes: vips: %q is not a network with room for addresses, such as 240.240.0.0/16", s)
				}
				m.VIPs = append(m.VIPs, p)
			}
		}
	case "vip_state":
		if err := want(1, 1, "PATH"); err != nil {
			return err
		}
		m.VIPState = args[0]
	case "probe_interval":
		return duration(&m.ProbeInterval)
	case "hold_down":
		return duration(&m.HoldDown)
	case "lease":
		return duration(&m.Lease)
	}
	return nil
}

// Finish implements kubernetes.Extension: it fills the defaults and checks the options that need
// mesh_suffixes, once the block is read; local is this cluster's id.
func (m *Config) Finish(c *caddy.Controller, local string) error {
	if !m.Enabled() {
		if len(m.Remotes) > 0 || m.RemoteSecrets != "" || len(m.VIPs) > 0 || len(m.Gateways) > 0 {
			return c.Errf("kubernetes: remote clusters, gateways and vips need mesh_suffixes, the names they answer")
		}
		return nil
	}
	if local == "" || len(validation.IsDNS1123Label(local)) > 0 {
		return c.Errf("kubernetes: mesh_suffixes needs this cluster's id, a DNS label: add 'cluster ID'")
	}
	for _, r := range m.Remotes {
		if r.ID == local {
			return c.Errf("kubernetes: remote %s: that is this cluster's id", r.ID)
		}
	}
	if m.GatewayName == "" {
		m.GatewayNS, m.GatewayName, _ = strings.Cut(DefaultGatewayService, "/")
	}
	if m.GatewayPort == 0 {
		m.GatewayPort = DefaultGatewayPort
	}
	if m.ProbeInterval == 0 {
		m.ProbeInterval = DefaultProbeInterval
	}
	if m.HoldDown == 0 {
		m.HoldDown = DefaultHoldDown
	}
	if m.Lease == 0 {
		m.Lease = DefaultLease
	}
	if len(m.VIPs) > 0 && m.VIPState == "" {
		return c.Errf("kubernetes: vips needs vip_state PATH, where the addresses are kept across restarts")
	}
	return nil
}
