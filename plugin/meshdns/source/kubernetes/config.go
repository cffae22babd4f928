package kubernetes

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
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

	// From the meshdns block.
	ClusterDomain string
}

// Extension reads the properties of a kubernetes block that configure another source of this
// cluster (multicluster.Config): the block keeps one syntax while the sources are two, and this
// package knows nothing of the other.
type Extension interface {
	Properties() []string // the properties it reads
	Repeatable() []string // those of them that may be given more than once
	ParseProperty(c *caddy.Controller, prop string, args []string) error
	// Finish fills defaults and checks the block once it is read; cluster is the block's cluster id.
	Finish(c *caddy.Controller, cluster string) error
	Enabled() bool // it serves names: clients_only refuses it then
}

// Parse reads the rest of a "kubernetes [{ ... }]" line, the controller standing on "kubernetes";
// the properties of the extensions go to them.
func Parse(c *caddy.Controller, exts ...Extension) (*Config, error) {
	cfg := &Config{StartupTimeout: DefaultStartupTimeout}
	if args := c.RemainingArgs(); len(args) > 0 {
		return nil, c.Errf("kubernetes: unexpected %q: options go in a block, as in kubernetes { kubeconfig PATH }", strings.Join(args, " "))
	}
	owner := map[string]Extension{}
	var repeatable []string
	for _, e := range exts {
		for _, p := range e.Properties() {
			owner[p] = e
		}
		repeatable = append(repeatable, e.Repeatable()...)
	}
	err := source.ParseBlock(c, "kubernetes", repeatable, func(prop string, args []string) error {
		if e, ok := owner[prop]; ok {
			return e.ParseProperty(c, prop, args)
		}
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
	if err := cfg.finish(c, exts); err != nil {
		return nil, err
	}
	return cfg, nil
}

// finish checks what only the whole block tells: names asked of a source that watches only
// clients, and what the extensions check (a multicluster option without mesh_suffixes).
func (cfg *Config) finish(c *caddy.Controller, exts []Extension) error {
	enabled := false
	for _, e := range exts {
		enabled = enabled || e.Enabled()
	}
	if cfg.ClientsOnly && (len(cfg.Namespaces) > 0 || cfg.ServiceEntries || cfg.Sidecars || cfg.MeshConfig != "" || cfg.MeshConfigMap != "" || cfg.ClustersetZone != "" || enabled) {
		return c.Errf("kubernetes: clients_only watches pods only: it cannot be given with namespaces, serviceentries, sidecars, mesh_config, clusterset or multicluster options")
	}
	for _, e := range exts {
		if err := e.Finish(c, cfg.Cluster); err != nil {
			return err
		}
	}
	return nil
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
		return kubewatch.Tuned(rc), nil
	}
	rc, err = kubewatch.RestConfig(cfg.Kubeconfig, cfg.Context, nil)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	return rc, nil
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
