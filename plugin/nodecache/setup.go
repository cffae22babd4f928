package nodecache

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
)

func init() { plugin.Register(pluginName, setup) }

// Defaults of k8s-dns-node-cache.
const (
	DefaultLocalIP       = "169.254.20.10"
	DefaultInterface     = "nodelocaldns"
	DefaultHealthPort    = 8080
	DefaultCheckInterval = 60 * time.Second
	// DefaultLameduck covers a surge handover: the instance taking over may report ready a moment
	// before its DNS sockets have joined the address.
	DefaultLameduck = 5 * time.Second
)

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	n := newNodeCache(cfg)
	// The interface before the servers listen, so that they can bind the local addresses (the rules
	// follow in the background); again at each reload, which finds everything in place.
	c.OnStartup(func() error {
		did, err := n.ensureLink()
		if len(did) > 0 {
			log.Infof("node-local setup: %s", strings.Join(did, "; "))
		}
		if err != nil {
			return plugin.Error(pluginName, err)
		}
		if err := n.waitForAddresses(); err != nil {
			return plugin.Error(pluginName, err)
		}
		n.start()
		live.Store(n, struct{}{})
		return nil
	})
	c.OnShutdown(func() error {
		live.Delete(n)
		n.stop()
		return nil
	})
	// Only when the process ends: a reload starts the new instance before the old one shuts down,
	// and the node must not lose its DNS addresses in between.
	c.OnFinalShutdown(func() error {
		n.stop()
		return n.teardown()
	})
	return nil
}

func parse(c *caddy.Controller) (Config, error) {
	cfg := Config{
		Interface:      DefaultInterface,
		SetupInterface: true,
		SetupIPTables:  true,
		Port:           53,
		HealthPort:     DefaultHealthPort,
		CheckInterval:  DefaultCheckInterval,
		Lameduck:       DefaultLameduck,
		Rules:          "auto",
	}
	i := 0
	for c.Next() {
		if i > 0 {
			return cfg, plugin.ErrOnce
		}
		i++
		for _, a := range c.RemainingArgs() {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.Zone() != "" {
				return cfg, c.Errf("%q is not an IP address", a)
			}
			cfg.LocalIPs = append(cfg.LocalIPs, ip.Unmap())
		}
		seen := map[string]bool{}
		for c.NextBlock() {
			prop := c.Val()
			if seen[prop] {
				return cfg, c.Errf("property '%s' given twice", prop)
			}
			seen[prop] = true
			args := c.RemainingArgs()
			one := func(what string) (string, error) {
				if len(args) != 1 {
					return "", c.Errf("%s: want %s, got %d arguments", prop, what, len(args))
				}
				return args[0], nil
			}
			var err error
			switch prop {
			case "interface":
				var v string
				if v, err = one("an interface name"); err == nil {
					if len(v) > 15 || v == "" {
						return cfg, c.Errf("interface: %q is not an interface name (1 to 15 bytes)", v)
					}
					cfg.Interface = v
				}
			case "port", "health_port":
				var v string
				if v, err = one("a port number"); err == nil {
					p, perr := strconv.Atoi(v)
					if perr != nil || p < 1 || p > 65535 {
						return cfg, c.Errf("%s: %q is not a port number", prop, v)
					}
					if prop == "port" {
						cfg.Port = p
					} else {
						cfg.HealthPort = p
					}
				}
			case "setup_interface", "setup_iptables":
				var v string
				if v, err = one("on or off"); err == nil {
					if v != "on" && v != "off" {
						return cfg, c.Errf("%s: %q is neither on nor off", prop, v)
					}
					if prop == "setup_interface" {
						cfg.SetupInterface = v == "on"
					} else {
						cfg.SetupIPTables = v == "on"
					}
				}
			case "rules":
				var v string
				if v, err = one("iptables, nftables or auto"); err == nil {
					if v != "iptables" && v != "nftables" && v != "auto" {
						return cfg, c.Errf("rules: %q is not iptables, nftables or auto", v)
					}
					cfg.Rules = v
				}
			case "skip_teardown":
				if len(args) != 0 {
					return cfg, c.Errf("skip_teardown: want no arguments, got %d", len(args))
				}
				cfg.SkipTeardown = true
			case "check_interval", "lameduck":
				var v string
				if v, err = one("a duration such as 5s"); err == nil {
					d, perr := time.ParseDuration(v)
					if perr != nil || d < 0 {
						return cfg, c.Errf("%s: %q is not a duration such as 5s (0 turns it off)", prop, v)
					}
					if prop == "check_interval" {
						cfg.CheckInterval = d
					} else {
						cfg.Lameduck = d
					}
				}
			default:
				return cfg, c.Errf("unknown property '%s'", prop)
			}
			if err != nil {
				return cfg, err
			}
		}
	}
	if len(cfg.LocalIPs) == 0 {
		cfg.LocalIPs = []netip.Addr{netip.MustParseAddr(DefaultLocalIP)}
	}
	if cfg.Port == cfg.HealthPort {
		return cfg, fmt.Errorf("port and health_port are both %d", cfg.Port)
	}
	return cfg, nil
}
