package kubernetes

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// DefaultStartupTimeout is how long CoreDNS's start waits for the first sync, as the kubernetes plugin
// does: after it the server starts anyway, not ready, answering as before a sync.
const DefaultStartupTimeout = 5 * time.Second

// Config is one "kubernetes { ... }" block of the meshdns directive.
type Config struct {
	Kubeconfig     string   // empty: the in-cluster configuration
	Context        string   // kubeconfig context; empty: its current context
	Namespaces     []string // empty: every namespace
	ServiceEntries bool     // also watch networking.istio.io ServiceEntries
	Sidecars       bool     // also watch networking.istio.io Sidecars: their egress hosts limit names
	MeshConfig     string   // the MeshConfig file istiod reads: exportTo defaults, root namespace
	MeshConfigMap  string   // or NAMESPACE/NAME of the ConfigMap whose "mesh" key it is, watched
	Debug          string   // address of the debug HTTP endpoint (/visibility, /multicluster)
	ClustersetZone string   // non-empty: serve this zone from ServiceImports (MCS DNS)
	Clients        bool     // learn client namespaces from pod addresses
	ClientsNode    string   // with Clients: only the pods of this node
	ClientsOnly    bool     // watch only the pods: the names come from another source (nds namespaces)
	Cluster        string   // the cluster id put on entries
	StartupTimeout time.Duration
	Multicluster   Multicluster

	// From the meshdns block.
	ClusterDomain string
}

// Parse reads the rest of a "kubernetes [{ ... }]" line, the controller standing on "kubernetes".
func Parse(c *caddy.Controller) (*Config, error) {
	cfg := &Config{StartupTimeout: DefaultStartupTimeout}
	if args := c.RemainingArgs(); len(args) > 0 {
		return nil, c.Errf("kubernetes: unexpected %q: options go in a block, as in kubernetes { kubeconfig PATH }", strings.Join(args, " "))
	}
	err := source.ParseBlock(c, "kubernetes", []string{"remote", "gateway"}, func(prop string, args []string) error {
		want := func(min, max int, what string) error {
			return source.WantArgs(c, "kubernetes", prop, args, min, max, what)
		}
		var err error
		switch prop {
		case "kubeconfig":
			if err = want(1, 2, "PATH [CONTEXT]"); err == nil {
				cfg.Kubeconfig = args[0]
				if len(args) == 2 {
					cfg.Context = args[1]
				}
				if _, statErr := os.Stat(cfg.Kubeconfig); statErr != nil {
					err = c.Errf("kubernetes: kubeconfig: %v", statErr)
				}
			}
		case "namespaces":
			if err = want(1, 1<<16, "at least one namespace"); err == nil {
				for _, ns := range args {
					if len(validation.IsDNS1123Label(ns)) > 0 {
						return c.Errf("kubernetes: namespaces: %q is not a namespace name", ns)
					}
				}
				cfg.Namespaces = args
			}
		case "serviceentries":
			if err = want(0, 0, "no arguments"); err == nil {
				cfg.ServiceEntries = true
			}
		case "sidecars":
			if err = want(0, 0, "no arguments"); err == nil {
				cfg.Sidecars = true
			}
		case "mesh_config":
			if err = want(1, 2, "PATH of a MeshConfig YAML file, or configmap [NAMESPACE/NAME]"); err != nil {
				break
			}
			if args[0] == "configmap" {
				cfg.MeshConfigMap = defaultMeshConfigMap
				if len(args) == 2 {
					cfg.MeshConfigMap = args[1]
				}
				if ns, name, ok := strings.Cut(cfg.MeshConfigMap, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
					err = c.Errf("kubernetes: mesh_config configmap: want NAMESPACE/NAME, such as %s, got %q", defaultMeshConfigMap, cfg.MeshConfigMap)
				}
				break
			}
			if len(args) == 2 {
				err = c.Errf("kubernetes: mesh_config: want PATH or configmap [NAMESPACE/NAME], got %q", strings.Join(args, " "))
				break
			}
			cfg.MeshConfig = args[0]
			if _, statErr := os.Stat(cfg.MeshConfig); statErr != nil {
				err = c.Errf("kubernetes: mesh_config: %v", statErr)
			}
		case "debug":
			if err = want(1, 1, "ADDRESS such as 127.0.0.1:9154"); err == nil {
				cfg.Debug = args[0]
			}
		case "clusterset":
			if err = want(0, 1, "[ZONE]"); err == nil {
				cfg.ClustersetZone = DefaultClustersetZone
				if len(args) == 1 {
					cfg.ClustersetZone = strings.ToLower(strings.Trim(args[0], "."))
					if verr := table.ValidateHost(cfg.ClustersetZone); verr != nil || strings.Contains(cfg.ClustersetZone, "*") {
						err = c.Errf("kubernetes: clusterset: %q is not a zone name", args[0])
					}
				}
			}
		case "clients":
			if err = want(0, 1, "[NODE]"); err == nil {
				cfg.Clients = true
				if len(args) == 1 {
					cfg.ClientsNode = args[0]
				}
			}
		case "clients_only":
			if err = want(0, 1, "[NODE]"); err == nil {
				cfg.Clients, cfg.ClientsOnly = true, true
				if len(args) == 1 {
					cfg.ClientsNode = args[0]
				}
			}
		case "cluster":
			if err = want(1, 1, "one cluster id"); err == nil {
				cfg.Cluster = args[0]
			}
		case "network", "locality", "remote", "remote_secrets", "mesh_suffixes", "export_label", "gateway_service",
			"gateway", "gateway_port", "vips", "vip_state", "probe_interval", "hold_down", "lease":
			err = cfg.Multicluster.parse(c, prop, args)
		case "startup_timeout":
			if err = want(1, 1, "a duration such as 5s"); err == nil {
				d, perr := time.ParseDuration(args[0])
				if perr != nil || d < 0 {
					err = c.Errf("kubernetes: startup_timeout: %q is not a duration such as 5s", args[0])
				}
				cfg.StartupTimeout = d
			}
		default:
			err = source.Unknown(c, "kubernetes", prop)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := cfg.finish(c); err != nil {
		return nil, err
	}
	return cfg, nil
}

// finish checks what only the whole block tells: a multicluster option without mesh_suffixes, or
// names asked of a source that watches only clients.
func (cfg *Config) finish(c *caddy.Controller) error {
	if cfg.ClientsOnly && (len(cfg.Namespaces) > 0 || cfg.ServiceEntries || cfg.Sidecars || cfg.MeshConfig != "" || cfg.MeshConfigMap != "" || cfg.ClustersetZone != "" || cfg.Multicluster.Enabled()) {
		return c.Errf("kubernetes: clients_only watches pods only: it cannot be given with namespaces, serviceentries, sidecars, mesh_config, clusterset or multicluster options")
	}
	return cfg.Multicluster.finish(c, cfg.Cluster)
}

// restConfig is the client configuration: the kubeconfig file and context given, or in-cluster.
func (cfg *Config) restConfig() (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if cfg.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig given and not in a cluster: %w", err)
		}
		return tuned(rc), nil
	}
	rc, err = kubeconfigRest(cfg.Kubeconfig, cfg.Context, nil)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	return rc, nil
}

// kubeconfigRest is the client configuration of a kubeconfig: the file at path (with context, or its
// current one), or the bytes of one (a remote secret's).
func kubeconfigRest(path, context string, kubeconfig []byte) (*rest.Config, error) {
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
	return tuned(rc), nil
}

// tuned sets what every client of ours shares: its name, and the rate for the first lists
// (informers list once and then watch: a higher rate only matters then).
func tuned(rc *rest.Config) *rest.Config {
	rc.UserAgent = "meshdns"
	rc.QPS, rc.Burst = 50, 100
	return rc
}

// String names the source in logs and keys its carried table across reloads.
func (cfg *Config) String() string {
	where := "in-cluster"
	if cfg.Kubeconfig != "" {
		where = cfg.Kubeconfig
		if cfg.Context != "" {
			where += "@" + cfg.Context
		}
	}
	s := "kubernetes " + where
	if len(cfg.Namespaces) > 0 {
		s += " namespaces " + strings.Join(cfg.Namespaces, ",")
	}
	if cfg.ServiceEntries {
		s += " +serviceentries"
	}
	if cfg.Sidecars {
		s += " +sidecars"
	}
	if cfg.ClustersetZone != "" {
		s += " +clusterset " + cfg.ClustersetZone
	}
	if cfg.ClientsOnly {
		s += " clients only"
	}
	return s
}
