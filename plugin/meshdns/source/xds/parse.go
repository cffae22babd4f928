package xds

import (
	"net"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/meshdns/source"
)

// ParseProperty reads the properties every xDS source's block has, tls CA_FILE [SERVER_NAME],
// client_cert CERT KEY and token FILE, into d; it reports false for any other property.
func (d *Dial) ParseProperty(c *caddy.Controller, kind, prop string, args []string) (bool, error) {
	var err error
	switch prop {
	case "tls":
		if err = source.WantArgs(c, kind, prop, args, 1, 2, "CA_FILE [SERVER_NAME]"); err == nil {
			d.CAFile = args[0]
			if len(args) == 2 {
				d.ServerName = args[1]
			}
			err = source.Readable(c, kind, prop, d.CAFile)
		}
	case "client_cert":
		if err = source.WantArgs(c, kind, prop, args, 2, 2, "CERT_FILE KEY_FILE"); err == nil {
			d.CertFile, d.KeyFile = args[0], args[1]
			if err = source.Readable(c, kind, prop, d.CertFile); err == nil {
				err = source.Readable(c, kind, prop, d.KeyFile)
			}
		}
	case "token":
		if err = source.WantArgs(c, kind, prop, args, 1, 1, "FILE"); err == nil {
			d.TokenFile = args[0]
			err = source.Readable(c, kind, prop, d.TokenFile)
		}
	default:
		return false, nil
	}
	return true, err
}

// LocalIPs are this host's global unicast addresses, IPv4 first, as a proxy reports them.
func LocalIPs() []string {
	var v4, v6 []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			if n.IP.To4() != nil {
				v4 = append(v4, n.IP.String())
			} else {
				v6 = append(v6, n.IP.String())
			}
		}
	}
	return append(v4, v6...)
}
