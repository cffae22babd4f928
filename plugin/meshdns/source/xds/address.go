package xds

import (
	"fmt"
	"net"
	"strings"

	"github.com/coredns/caddy"
)

// ParseAddress reads the one ADDRESS after a source's name ("nds ADDRESS", "ambient ADDRESS"),
// checked by CheckAddress; the errors name the source and the Corefile line.
func ParseAddress(c *caddy.Controller, source string) (string, error) {
	args := c.RemainingArgs()
	if len(args) != 1 {
		return "", c.Errf("%s: want one ADDRESS (host:port), got %d arguments", source, len(args))
	}
	if err := CheckAddress(args[0]); err != nil {
		return "", c.Errf("%s: %v", source, err)
	}
	return args[0], nil
}

// CheckAddress accepts what the stream dials: host:port, or a gRPC dns target, dns:///host:port or
// dns://SERVER:PORT/host:port, which has SERVER resolve the name (a node-local resolver asks kube-dns
// for istiod rather than itself).
func CheckAddress(a string) error {
	target := a
	if rest, ok := strings.CutPrefix(a, "dns://"); ok {
		server, name, found := strings.Cut(rest, "/")
		if !found {
			return fmt.Errorf("%q is not dns://[SERVER]/host:port", a)
		}
		if server != "" {
			if _, _, err := net.SplitHostPort(server); err != nil {
				return fmt.Errorf("%q: the resolver %q is not host:port", a, server)
			}
		}
		target = name
	}
	if host, port, err := net.SplitHostPort(target); err != nil || port == "" || host == "" {
		return fmt.Errorf("%q is not host:port, such as istiod.istio-system.svc:15012, or dns://SERVER:53/host:port", a)
	}
	return nil
}
