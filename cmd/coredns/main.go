// Command coredns is the meshdns distribution of CoreDNS: every stock plugin plus meshdns.
package main

//go:generate go run ./internal/gen -in ../../plugin.cfg -out zdirectives.go

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	"github.com/meshdns/meshdns/plugin/nodecache"
)

// Version is this distribution's version; the build may set it with -ldflags "-X main.Version=...".
var Version = "0.1.0"

func main() {
	dnsserver.Directives = directives
	// -version prints "meshdns-VERSION+coredns-1.15.0": this distribution and the CoreDNS under it.
	caddy.AppName = "meshdns"
	caddy.AppVersion = Version + "+coredns-" + coremain.CoreVersion
	if slices.Contains(os.Args[1:], "-plugins") || slices.Contains(os.Args[1:], "--plugins") {
		fmt.Print(describePlugins())
		return
	}
	// Run as k8s-dns-node-cache is run, when its flags are given: its Corefile template filled in.
	compat, rest, err := nodecache.SplitArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshdns: %v\n", err)
		os.Exit(2)
	}
	if compat != nil {
		if _, err := compat.Write(); err != nil {
			fmt.Fprintf(os.Stderr, "meshdns: %v\n", err)
			os.Exit(1)
		}
		if !slices.ContainsFunc(rest, func(a string) bool { return a == "-conf" || strings.HasPrefix(a, "-conf=") }) {
			rest = append(rest, "-conf", compat.Corefile)
		}
		os.Args = append(os.Args[:1], rest...)
		go compat.Watch()
	}
	coremain.Run()
}

// describePlugins lists the plugins with their server type, as "dns.meshdns", so that the listing
// says which server each plugin belongs to (CoreDNS 1.15 prints bare names).
func describePlugins() string {
	var b strings.Builder
	pl := caddy.ListPlugins()
	for _, section := range []struct{ key, title string }{
		{"server_types", "Server types"},
		{"caddyfile_loaders", "Caddyfile loaders"},
		{"others", "Other plugins"},
	} {
		fmt.Fprintf(&b, "%s:\n", section.title)
		for _, name := range pl[section.key] {
			fmt.Fprintf(&b, "  %s\n", name)
		}
		b.WriteString("\n")
	}
	return b.String()
}
