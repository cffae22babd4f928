package ambient

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/xds"
)

// DefaultCluster is the CLUSTER_ID istiod gives a cluster it was not told the name of.
const DefaultCluster = "Kubernetes"

// Config is one "ambient ADDRESS { ... }" block.
type Config struct {
	xds.Dial
	NodeID   string
	Cluster  string
	Network  string // the network of the clients: VIPs of other networks are left out
	Metadata map[string]string
	Debug    string // address of the debug HTTP endpoint

	// From the meshdns block: the namespace of the default node id and of clients the source does
	// not know, and the cluster domain (Services under .svc.DOMAIN get the Kubernetes short forms).
	Namespace     string
	ClusterDomain string
}

// Parse reads the rest of an "ambient ADDRESS [{ ... }]" line, the controller standing on "ambient".
func Parse(c *caddy.Controller) (*Config, error) {
	addr, err := xds.ParseAddress(c, "ambient")
	if err != nil {
		return nil, err
	}
	cfg := &Config{Dial: xds.Dial{Address: addr}, Cluster: DefaultCluster, Metadata: map[string]string{}}
	err = source.ParseBlock(c, "ambient", []string{"metadata"}, func(prop string, args []string) error {
		if ok, err := cfg.Dial.ParseProperty(c, "ambient", prop, args); ok {
			return err
		}
		want := func(n int, what string) error { return source.WantArgs(c, "ambient", prop, args, n, n, what) }
		switch prop {
		case "node_id":
			if err := want(1, "ID"); err != nil {
				return err
			}
			if parts := strings.Split(args[0], "~"); len(parts) != 4 || parts[0] != "ztunnel" {
				return c.Errf("ambient: node_id: %q is not ztunnel~IP~POD.NS~NS.svc.DOMAIN, such as ztunnel~10.0.0.1~meshdns-x1.kube-system~kube-system.svc.cluster.local", args[0])
			}
			cfg.NodeID = args[0]
		case "cluster":
			if err := want(1, "ID"); err != nil {
				return err
			}
			cfg.Cluster = args[0]
		case "network":
			if err := want(1, "NETWORK"); err != nil {
				return err
			}
			cfg.Network = args[0]
		case "metadata":
			if err := want(2, "KEY VALUE"); err != nil {
				return err
			}
			cfg.Metadata[args[0]] = args[1]
		case "debug":
			if err := want(1, "ADDRESS"); err != nil {
				return err
			}
			if _, port, err := net.SplitHostPort(args[0]); err != nil || port == "" {
				return c.Errf("ambient: debug: %q is not host:port, such as 127.0.0.1:9155", args[0])
			}
			cfg.Debug = args[0]
		default:
			return source.Unknown(c, "ambient", prop)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// nodeID is the configured node id or, by default, a ztunnel's: ztunnel~IP~HOSTNAME.NS~NS.svc.DOMAIN.
// istiod serves workload discovery to ztunnel nodes only.
func (cfg *Config) nodeID() string {
	if cfg.NodeID != "" {
		return cfg.NodeID
	}
	ns := cfg.namespace()
	return fmt.Sprintf("ztunnel~%s~%s.%s~%s.svc.%s", cfg.ip(), hostname(), ns, ns, cfg.clusterDomain())
}

func (cfg *Config) ip() string {
	if ips := xds.LocalIPs(); len(ips) > 0 {
		return ips[0]
	}
	return "127.0.0.1"
}

func hostname() string {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	if host == "" {
		host = "meshdns"
	}
	return host
}

func (cfg *Config) namespace() string {
	if cfg.Namespace != "" {
		return cfg.Namespace
	}
	return "default"
}

func (cfg *Config) clusterDomain() string {
	if cfg.ClusterDomain != "" {
		return strings.Trim(strings.ToLower(cfg.ClusterDomain), ".")
	}
	return "cluster.local"
}

// nodeNamespace is the namespace the node id names (its last part, NS.svc.DOMAIN), which is the
// identity's: not the block's namespace, which is only what clients no Workload names get.
func (cfg *Config) nodeNamespace() string {
	parts := strings.Split(cfg.nodeID(), "~")
	if ns, _, ok := strings.Cut(parts[len(parts)-1], "."); ok && ns != "" {
		return ns
	}
	return cfg.namespace()
}

// metadata is what ztunnel tells istiod about itself (NAMESPACE, the node id's, must match the
// token's on istiod's TLS port; NODE_NAME is the node's, from the downward API as in ztunnel's
// DaemonSet, else the host name), then the user's own keys.
func (cfg *Config) metadata() map[string]string {
	node := os.Getenv("NODE_NAME")
	if node == "" {
		node = hostname()
	}
	md := map[string]string{
		"NAMESPACE":  cfg.nodeNamespace(),
		"CLUSTER_ID": cfg.Cluster,
		"NODE_NAME":  node,
	}
	if ips := xds.LocalIPs(); len(ips) > 0 {
		md["INSTANCE_IPS"] = strings.Join(ips, ",")
	}
	for k, v := range cfg.Metadata {
		md[k] = v
	}
	return md
}

// String names the block's source in logs and, as source.Source's String, keys what a reload keeps.
func (cfg *Config) String() string {
	if cfg.Network != "" {
		return "ambient " + cfg.Address + " network " + cfg.Network
	}
	return "ambient " + cfg.Address
}
