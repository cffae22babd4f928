package meshdns

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
	"github.com/meshdns/meshdns/plugin/meshdns/source/ambient"
	"github.com/meshdns/meshdns/plugin/meshdns/source/file"
	"github.com/meshdns/meshdns/plugin/meshdns/source/kubernetes"
	"github.com/meshdns/meshdns/plugin/meshdns/source/multicluster"
	"github.com/meshdns/meshdns/plugin/meshdns/source/nds"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"github.com/miekg/dns"
)

func init() { plugin.Register(pluginName, setup) }

const (
	defaultTTL           = 30
	maxTTL               = 86400
	defaultClusterDomain = "cluster.local"
)

func setup(c *caddy.Controller) error {
	m, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	cfg := dnsserver.GetConfig(c)
	c.OnStartup(func() error {
		m.store.start(serverLabel(cfg))
		if d := m.store.startupTimeout(); d > 0 && !m.store.waitReady(d) {
			log.Warningf("starting without a complete name table: not every source synced within %v", d)
		}
		return nil
	})
	c.OnShutdown(func() error {
		m.closeUDP()
		m.store.stop()
		return nil
	})
	if !m.noBatchUDP {
		cfg.UDPDecorateWriterFunc = m.decorate(cfg, cfg.UDPDecorateWriterFunc)
	}
	cfg.AddPlugin(func(next plugin.Handler) plugin.Handler {
		m.Next = next
		return m
	})
	return nil
}

// parse reads the meshdns block. Sources load their first table here, so that a bad file stops
// startup with the Corefile line that named it.
func parse(c *caddy.Controller) (*MeshDNS, error) {
	m := &MeshDNS{}
	var (
		namespace     string
		search        []string
		clusterDomain = defaultClusterDomain
		ttl           = uint32(defaultTTL)
		files         []fileSource
		ndsConfigs    []*nds.Config
		kubeConfigs   []*kubernetes.Config
		meshConfigs   []*multicluster.Config // of each kubernetes block, read inside it
		ambConfigs    []*ambient.Config
		seen          = map[string]bool{}
	)
	i, line := 0, 0
	for c.Next() {
		if i > 0 {
			return nil, plugin.ErrOnce
		}
		i++
		line = c.Line()
		m.Zones = plugin.OriginsFromArgsOrServerBlock(c.RemainingArgs(), c.ServerBlockKeys)
		for c.NextBlock() {
			prop := c.Val()
			if prop != "file" && prop != "nds" && prop != "kubernetes" && prop != "ambient" && seen[prop] {
				return nil, c.Errf("property '%s' given twice", prop)
			}
			seen[prop] = true
			var args []string
			if prop != "nds" && prop != "kubernetes" && prop != "ambient" { // these read their own arguments and block
				args = c.RemainingArgs()
			}
			switch prop {
			case "file":
				f, err := parseFile(c, args)
				if err != nil {
					return nil, err
				}
				files = append(files, f)
			case "nds":
				cfg, err := nds.Parse(c)
				if err != nil {
					return nil, err
				}
				ndsConfigs = append(ndsConfigs, cfg)
			case "ambient":
				cfg, err := ambient.Parse(c)
				if err != nil {
					return nil, err
				}
				ambConfigs = append(ambConfigs, cfg)
			case "kubernetes":
				mc := &multicluster.Config{}
				cfg, err := kubernetes.Parse(c, mc)
				if err != nil {
					return nil, err
				}
				kubeConfigs = append(kubeConfigs, cfg)
				meshConfigs = append(meshConfigs, mc)
			case "namespace":
				if len(args) != 1 {
					return nil, c.Errf("namespace: want one namespace, got %d arguments", len(args))
				}
				if !isLabel(args[0]) {
					return nil, c.Errf("namespace: %q is not a valid namespace name", args[0])
				}
				namespace = strings.ToLower(args[0])
			case "cluster_domain":
				if len(args) != 1 {
					return nil, c.Errf("cluster_domain: want one domain, got %d arguments", len(args))
				}
				if err := table.ValidateHost(args[0]); err != nil || strings.Contains(args[0], "*") {
					return nil, c.Errf("cluster_domain: %q is not a domain name", args[0])
				}
				clusterDomain = strings.Trim(strings.ToLower(args[0]), ".")
			case "search":
				if len(args) == 0 {
					return nil, c.Errf("search: want at least one domain")
				}
				for _, s := range args {
					if err := table.ValidateHost(s); err != nil || strings.Contains(s, "*") {
						return nil, c.Errf("search: %q is not a domain name", s)
					}
				}
				search = args
			case "ttl":
				if len(args) != 1 {
					return nil, c.Errf("ttl: want one number of seconds, got %d arguments", len(args))
				}
				n, err := strconv.ParseUint(args[0], 10, 32)
				if err != nil || n > maxTTL {
					return nil, c.Errf("ttl: %q is not a number of seconds from 0 to %d", args[0], maxTTL)
				}
				ttl = uint32(n)
			case "fallthrough":
				m.Fall.SetZonesFromArgs(args)
			case "batch_udp":
				if len(args) != 1 || args[0] != "on" && args[0] != "off" {
					return nil, c.Errf("batch_udp: want on or off, got %q", strings.Join(args, " "))
				}
				m.noBatchUDP = args[0] == "off"
			default:
				return nil, c.Errf("unknown property '%s'", prop)
			}
		}
	}
	if len(files) == 0 && len(ndsConfigs) == 0 && len(kubeConfigs) == 0 && len(ambConfigs) == 0 {
		return nil, fmt.Errorf("%s:%d - Error during parsing: no name table source: give at least one 'file PATH', 'nds ADDRESS', 'ambient ADDRESS' or 'kubernetes'", c.File(), line)
	}

	m.view = table.NewView(namespace, search, clusterDomain)
	m.views = newViews(search, clusterDomain)
	m.store = newStore(table.Options{ClusterDomain: clusterDomain, TTL: ttl})
	for _, f := range files {
		m.store.add(f.src, f.initial)
	}
	var perNamespace []*nds.Source // "namespaces clients": given the clients source below
	var withTokens []*nds.Source   // "token_request": given the kubernetes source below
	for _, cfg := range ndsConfigs {
		cfg.Namespace, cfg.ClusterDomain = namespace, clusterDomain
		src, err := nds.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s:%d - Error during parsing: nds %s: %v", c.File(), line, cfg.Address, err)
		}
		m.store.add(src, nil)
		if cfg.ClientNamespaces {
			perNamespace = append(perNamespace, src)
		}
		if cfg.TokenRequest {
			withTokens = append(withTokens, src)
		}
	}
	for _, cfg := range ambConfigs {
		cfg.Namespace, cfg.ClusterDomain = namespace, clusterDomain
		src, err := ambient.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s:%d - Error during parsing: %s: %v", c.File(), line, cfg, err)
		}
		m.store.add(src, nil)
		m.clients = append(m.clients, src) // workload addresses give client namespaces
	}
	var clientNamespaces source.ClientNamespaces // the first kubernetes source with clients
	var tokens source.Tokens                     // the first kubernetes source
	for i, cfg := range kubeConfigs {
		cfg.ClusterDomain = clusterDomain
		src, err := kubernetes.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s:%d - Error during parsing: %s: %v", c.File(), line, cfg, err)
		}
		m.store.add(src, nil)
		if tokens == nil {
			tokens = src
		}
		if cfg.Clients {
			m.clients = append(m.clients, src)
			if clientNamespaces == nil {
				clientNamespaces = src
			}
		}
		if mc := meshConfigs[i]; mc.Enabled() {
			// The multicluster source watches this cluster with the block's client configuration,
			// and explains its answers on the block's debug endpoint.
			mesh, err := multicluster.New(mc, multicluster.Local{Cluster: cfg.Cluster, Rest: src.RestConfig(), Source: cfg.String(),
				StartupTimeout: cfg.StartupTimeout})
			if err != nil {
				return nil, fmt.Errorf("%s:%d - Error during parsing: %s: multicluster: %v", c.File(), line, cfg, err)
			}
			m.store.add(mesh, nil)
			src.HandleDebug("/multicluster", mesh)
		}
	}
	if len(perNamespace) > 0 && clientNamespaces == nil {
		return nil, fmt.Errorf("%s:%d - Error during parsing: nds %s: namespaces clients: no source in this block knows the clients' namespaces: add 'clients' to a kubernetes source, or list the namespaces", c.File(), line, perNamespace[0].Address())
	}
	for _, src := range perNamespace {
		src.UseClientNamespaces(clientNamespaces)
	}
	if len(withTokens) > 0 && tokens == nil {
		return nil, fmt.Errorf("%s:%d - Error during parsing: nds %s: token_request: no kubernetes source in this block to request tokens through", c.File(), line, withTokens[0].Address())
	}
	for _, src := range withTokens {
		src.UseTokens(tokens)
	}
	m.store.primed()
	return m, nil
}

type fileSource struct {
	src     *file.Source
	initial []table.Entry
}

// parseFile reads "file PATH [RELOAD]" and loads the file once.
func parseFile(c *caddy.Controller, args []string) (fileSource, error) {
	if len(args) == 0 || len(args) > 2 {
		return fileSource{}, c.Errf("file: want PATH [RELOAD], got %d arguments", len(args))
	}
	path := args[0]
	if root := dnsserver.GetConfig(c).Root; !filepath.IsAbs(path) && root != "" {
		path = filepath.Join(root, path)
	}
	interval := file.DefaultInterval
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		if err != nil || d < 0 {
			return fileSource{}, c.Errf("file: RELOAD %q is not a duration such as 5s (0 turns checking off)", args[1])
		}
		interval = d
	}
	src := file.New(path, interval)
	entries, err := src.Load()
	if err != nil {
		return fileSource{}, c.Errf("file %s: %v", args[0], err)
	}
	if entries == nil {
		entries = []table.Entry{}
	}
	return fileSource{src: src, initial: entries}, nil
}

func isLabel(s string) bool {
	_, ok := dns.IsDomainName(s)
	return ok && s != "" && len(s) <= 63 && !strings.ContainsAny(s, ".*\\")
}

// serverLabel is the server address CoreDNS's metrics use for this block's first listener.
func serverLabel(cfg *dnsserver.Config) string {
	host := ""
	if len(cfg.ListenHosts) > 0 {
		host = cfg.ListenHosts[0]
	}
	addr := net.JoinHostPort(host, cfg.Port)
	if a, err := net.ResolveTCPAddr("tcp", addr); err == nil {
		addr = a.String()
	}
	return fmt.Sprintf("%s://%s", cfg.Transport, addr)
}
