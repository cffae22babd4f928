package nds

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
)

// Defaults of the node istiod sees. ISTIO_VERSION only needs to be new enough for istiod to treat the
// node as a current proxy.
const (
	DefaultCluster      = "Kubernetes"
	DefaultIstioVersion = "1.31.0"
)

// Config is one "nds ADDRESS { ... }" block.
type Config struct {
	Address    string
	CAFile     string // verify the server with this CA; empty: plaintext
	ServerName string
	CertFile   string // client certificate, for mutual TLS
	KeyFile    string
	TokenFile  string // bearer JWT sent on each stream, re-read as it rotates
	NodeID     string
	Cluster    string
	Metadata   map[string]string
	Delta      bool

	// Per namespace: one subscription for each namespace with clients (ClientNamespaces, from the
	// meshdns block's clients source) and each of Namespaces, each shaped as a sidecar of its namespace.
	ClientNamespaces bool
	Namespaces       []string
	Grace            time.Duration // how long a namespace's subscription outlives its last client
	// TokenRequest, per namespace: each namespace's streams carry a token made for its
	// ServiceAccount (through the block's kubernetes source), as istiod's TLS port wants.
	TokenRequest   bool
	ServiceAccount string

	// From the meshdns block: the client namespace and cluster domain, for the default node id.
	Namespace     string
	ClusterDomain string
}

// Parse reads the rest of an "nds ADDRESS [{ ... }]" line, the controller standing on "nds".
func Parse(c *caddy.Controller) (*Config, error) {
	addr, err := xds.ParseAddress(c, "nds")
	if err != nil {
		return nil, err
	}
	cfg := &Config{Address: addr, Cluster: DefaultCluster, Metadata: map[string]string{}}
	err = source.ParseBlock(c, "nds", []string{"metadata"}, func(prop string, args []string) error {
		d := cfg.dial()
		if ok, err := d.ParseProperty(c, "nds", prop, args); ok {
			cfg.CAFile, cfg.ServerName, cfg.CertFile, cfg.KeyFile, cfg.TokenFile = d.CAFile, d.ServerName, d.CertFile, d.KeyFile, d.TokenFile
			return err
		}
		want := func(min, max int, what string) error { return source.WantArgs(c, "nds", prop, args, min, max, what) }
		switch prop {
		case "node_id":
			if err := want(1, 1, "ID"); err != nil {
				return err
			}
			cfg.NodeID = args[0]
			if strings.Count(cfg.NodeID, "~") != 3 {
				return c.Errf("nds: node_id: %q is not TYPE~IP~ID~DOMAIN, such as sidecar~10.0.0.1~vm1.ns~ns.svc.cluster.local", cfg.NodeID)
			}
		case "cluster":
			if err := want(1, 1, "ID"); err != nil {
				return err
			}
			cfg.Cluster = args[0]
		case "metadata":
			if err := want(2, 2, "KEY VALUE"); err != nil {
				return err
			}
			cfg.Metadata[args[0]] = args[1]
		case "namespaces":
			if err := want(1, 1000, "clients, or NAMESPACE..."); err != nil {
				return err
			}
			if len(args) == 1 && args[0] == "clients" {
				cfg.ClientNamespaces = true
				break
			}
			for _, ns := range args {
				if !isLabel(ns) {
					return c.Errf("nds: namespaces: %q is not a namespace name", ns)
				}
				if !slices.Contains(cfg.Namespaces, ns) {
					cfg.Namespaces = append(cfg.Namespaces, ns)
				}
			}
		case "namespace_grace":
			if err := want(1, 1, "a duration such as 30s"); err != nil {
				return err
			}
			d, err := time.ParseDuration(args[0])
			if err != nil || d < 0 {
				return c.Errf("nds: namespace_grace: %q is not a duration such as 30s", args[0])
			}
			cfg.Grace = d
		case "token_request":
			if err := want(0, 1, "[SERVICE_ACCOUNT]"); err != nil {
				return err
			}
			cfg.TokenRequest, cfg.ServiceAccount = true, DefaultServiceAccount
			if len(args) == 1 {
				if !isLabel(args[0]) && !isSubdomain(args[0]) {
					return c.Errf("nds: token_request: %q is not a service account name", args[0])
				}
				cfg.ServiceAccount = args[0]
			}
		case "delta":
			if err := want(0, 0, "no arguments"); err != nil {
				return err
			}
			cfg.Delta = true
		default:
			return source.Unknown(c, "nds", prop)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cfg.PerNamespace() && cfg.NodeID != "" {
		return nil, c.Errf("nds: node_id and namespaces exclude each other: each namespace's subscription has a node id of its own")
	}
	if !cfg.PerNamespace() && cfg.Grace != 0 {
		return nil, c.Errf("nds: namespace_grace without namespaces")
	}
	if cfg.TokenRequest && !cfg.PerNamespace() {
		return nil, c.Errf("nds: token_request without namespaces: give one namespace's token with token FILE")
	}
	if cfg.TokenRequest && cfg.TokenFile != "" {
		return nil, c.Errf("nds: token and token_request exclude each other")
	}
	return cfg, nil
}

// PerNamespace reports whether the block subscribes once for each namespace rather than once.
func (cfg *Config) PerNamespace() bool { return cfg.ClientNamespaces || len(cfg.Namespaces) > 0 }

// DefaultGrace is how long a namespace's subscription stays open after its last client went: a pod
// restarting, or a rollout replacing the namespace's only pod, does not close and reopen it.
const DefaultGrace = 30 * time.Second

func (cfg *Config) grace() time.Duration {
	if cfg.Grace > 0 {
		return cfg.Grace
	}
	return DefaultGrace
}

// DefaultServiceAccount is the ServiceAccount token_request asks tokens for: every namespace has it.
const DefaultServiceAccount = "default"

// TokenAudience is the audience of the tokens asked for, the one istiod checks (istio-agent's).
const TokenAudience = "istio-ca"

func isSubdomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isLabel(l) {
			return false
		}
	}
	return true
}

func isLabel(s string) bool {
	return len(s) > 0 && len(s) <= 63 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == "" &&
		s[0] != '-' && s[len(s)-1] != '-'
}

// dial is where and how the block reaches its control plane.
func (cfg *Config) dial() xds.Dial {
	return xds.Dial{Address: cfg.Address, CAFile: cfg.CAFile, ServerName: cfg.ServerName,
		CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TokenFile: cfg.TokenFile}
}

// nodeID is the configured node id or, by default, a sidecar's: sidecar~IP~HOSTNAME.NS~NS.svc.DOMAIN.
func (cfg *Config) nodeID() string {
	if cfg.NodeID != "" {
		return cfg.NodeID
	}
	return cfg.nodeIDIn(cfg.namespace())
}

// nodeIDIn is the node id of a sidecar of namespace ns on this host.
func (cfg *Config) nodeIDIn(ns string) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "meshdns"
	}
	host, _, _ = strings.Cut(host, ".")
	ip := "127.0.0.1"
	if ips := xds.LocalIPs(); len(ips) > 0 {
		ip = ips[0]
	}
	return fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.%s", ip, host, ns, ns, cfg.clusterDomain())
}

func (cfg *Config) namespace() string {
	if cfg.Namespace != "" {
		return cfg.Namespace
	}
	return "default"
}

func (cfg *Config) clusterDomain() string {
	if cfg.ClusterDomain != "" {
		return cfg.ClusterDomain
	}
	return "cluster.local"
}

// metadata is what the node tells istiod: enough for it to send everything a DNS-capturing proxy
// sees (DNS_CAPTURE brings the auto-allocated addresses of ServiceEntries), the node's addresses
// (with both families, a dual-stack istiod sends both families of dual-stack Services), then the
// user's own keys. NAMESPACE must match the token's on istiod's TLS port.
func (cfg *Config) metadata() map[string]string { return cfg.metadataIn(cfg.namespace()) }

// metadataIn is the metadata of a sidecar of namespace ns.
func (cfg *Config) metadataIn(ns string) map[string]string {
	md := map[string]string{
		"DNS_CAPTURE":       "true",
		"DNS_AUTO_ALLOCATE": "true",
		"CLUSTER_ID":        cfg.Cluster,
		"NAMESPACE":         ns,
		"ISTIO_VERSION":     DefaultIstioVersion,
	}
	if ips := xds.LocalIPs(); len(ips) > 0 {
		md["INSTANCE_IPS"] = strings.Join(ips, ",")
	}
	for k, v := range cfg.Metadata {
		md[k] = v
	}
	return md
}
