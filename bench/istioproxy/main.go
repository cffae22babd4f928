// Command istioproxy serves a NameTable file with Istio's own DNS proxy (istio.io/istio/pkg/dns/client,
// the code istio-agent runs in every sidecar), so that bench/peers.sh can measure it next to meshdns on
// the same names. It listens on UDP and TCP at -addr and forwards names that are not in the table, as
// Istio does, to the nameservers of a resolv.conf.
//
// Istio always reads /etc/resolv.conf (its path is fixed in NewLocalDNSServer, and resolv.conf cannot
// name a port), so the servers and search list taken from -resolv-conf and -upstream are written into
// the server's unexported fields after it is built, before the table is loaded and serving starts.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"unsafe"

	"github.com/miekg/dns"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pkg/dns/client"
	dnsProto "istio.io/istio/pkg/dns/proto"
)

func main() {
	var (
		table      = flag.String("table", "nametable.yaml", "NameTable file, YAML or JSON (as bench/gentable writes it)")
		addr       = flag.String("addr", "127.0.0.1:15353", "address to serve DNS on, UDP and TCP")
		resolvConf = flag.String("resolv-conf", "/etc/resolv.conf", "resolv.conf giving the upstream nameservers and the search list")
		upstream   = flag.String("upstream", "", "host:port of the upstream for misses; overrides the nameservers of -resolv-conf (whose port is always 53)")
		namespace  = flag.String("namespace", "bench", "the proxy's namespace: bare short names answer for services in it")
		domain     = flag.String("domain", "", "the proxy's domain (default NAMESPACE.svc.cluster.local)")
	)
	flag.Parse()
	if *domain == "" {
		*domain = *namespace + ".svc.cluster.local"
	}
	if err := run(*table, *addr, *resolvConf, *upstream, *namespace, *domain); err != nil {
		fmt.Fprintln(os.Stderr, "istioproxy:", err)
		os.Exit(1)
	}
}

func run(tablePath, addr, resolvConf, upstream, namespace, domain string) error {
	nt, err := readTable(tablePath)
	if err != nil {
		return err
	}
	conf, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return err
	}
	servers := make([]string, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		servers = append(servers, net.JoinHostPort(s, conf.Port)) // as NewLocalDNSServer does
	}
	if upstream != "" {
		servers = []string{upstream}
	}
	if len(servers) == 0 {
		return fmt.Errorf("%s names no nameserver and -upstream is not set", resolvConf)
	}

	srv, err := client.NewLocalDNSServer(namespace, domain, addr)
	if err != nil {
		return err
	}
	// Before UpdateLookupTable: the search list shapes the table (CNAMEs for search-suffixed names).
	if err := setField(srv, "resolvConfServers", servers); err != nil {
		return err
	}
	if err := setField(srv, "searchNamespaces", conf.Search); err != nil {
		return err
	}
	srv.UpdateLookupTable(nt)
	srv.StartDNS()
	fmt.Fprintf(os.Stderr, "istioproxy: %d hosts on %s, upstream %v, search %v\n", len(nt.Table), addr, servers, conf.Search)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	srv.Close()
	return nil
}

// readTable reads a NameTable in its protobuf JSON form, or the same as YAML.
func readTable(path string) (*dnsProto.NameTable, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(b) // JSON is YAML too
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	nt := &dnsProto.NameTable{}
	if err := protojson.Unmarshal(j, nt); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return nt, nil
}

// setField sets the unexported []string field name of *srv. It fails, rather than guess, if a later
// Istio renamed the field or changed its type.
func setField(srv *client.LocalDNSServer, name string, v []string) error {
	f := reflect.ValueOf(srv).Elem().FieldByName(name)
	if !f.IsValid() || f.Type() != reflect.TypeOf(v) {
		return fmt.Errorf("istio's LocalDNSServer has no []string field %s: this harness needs updating", name)
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(v))
	return nil
}
