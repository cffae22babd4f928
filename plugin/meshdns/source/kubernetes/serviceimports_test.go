package kubernetes

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func mcsSlice(name, cluster string, family discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	labels := map[string]string{labelImportName: "db"}
	if cluster != "" {
		labels[labelSourceCluster] = cluster
	}
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: labels}, AddressType: family, Endpoints: eps}
}

func endpoint(hostname string, ready bool, addrs ...string) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
	if hostname != "" {
		ep.Hostname = &hostname
	}
	return ep
}

// render prints entries one per line: host, addresses, SRV records.
func render(entries []table.Entry) string {
	var lines []string
	for _, e := range entries {
		line := e.Host
		for _, a := range e.Addrs {
			line += " " + a.String()
		}
		for _, r := range e.SRV {
			line += fmt.Sprintf(" SRV %d %s", r.Port, r.Target)
		}
		lines = append(lines, line)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func TestServiceImportEntries(t *testing.T) {
	ports := []importPort{{Name: "http", Protocol: "TCP", Port: 80}, {Port: 81}, {Name: "dns", Protocol: "UDP", Port: 53}}
	for _, tc := range []struct {
		name    string
		si      serviceImport
		slices  []*discoveryv1.EndpointSlice
		want    string
		wantErr string
	}{{
		name: "clustersetip dual stack with named ports",
		si:   serviceImport{IPs: []string{"10.42.0.1", "fd42::1"}, Ports: ports},
		want: `_dns._udp.web.shop.svc.clusterset.local SRV 53 web.shop.svc.clusterset.local
_http._tcp.web.shop.svc.clusterset.local SRV 80 web.shop.svc.clusterset.local
web.shop.svc.clusterset.local 10.42.0.1 fd42::1`,
	}, {
		name: "clustersetip without an ip yet",
		si:   serviceImport{Ports: ports},
	}, {
		name:    "clustersetip with a bad ip",
		si:      serviceImport{IPs: []string{"10.42.0.300", "10.42.0.2"}},
		want:    "web.shop.svc.clusterset.local 10.42.0.2",
		wantErr: `ip "10.42.0.300" is not an address`,
	}, {
		name: "headless across clusters",
		si:   serviceImport{Headless: true, Ports: ports[:1]},
		slices: []*discoveryv1.EndpointSlice{
			mcsSlice("db-east-v4", "east", discoveryv1.AddressTypeIPv4, endpoint("db-0", true, "10.1.0.5"), endpoint("db-1", false, "10.1.0.6"), endpoint("", true, "10.1.0.7")),
			mcsSlice("db-east-v6", "east", discoveryv1.AddressTypeIPv6, endpoint("db-0", true, "fd01::5")),
			mcsSlice("db-west", "west", discoveryv1.AddressTypeIPv4, endpoint("db-0", true, "10.2.0.5")),
			mcsSlice("db-fqdn", "west", discoveryv1.AddressTypeFQDN, endpoint("x", true, "db.example.com")),
		},
		want: `10-1-0-7.east.db.shop.svc.clusterset.local 10.1.0.7
_http._tcp.db.shop.svc.clusterset.local SRV 80 db-0.east.db.shop.svc.clusterset.local SRV 80 10-1-0-7.east.db.shop.svc.clusterset.local SRV 80 db-0.west.db.shop.svc.clusterset.local
db-0.east.db.shop.svc.clusterset.local 10.1.0.5 fd01::5
db-0.west.db.shop.svc.clusterset.local 10.2.0.5
db.shop.svc.clusterset.local 10.1.0.5 10.1.0.7 fd01::5 10.2.0.5`,
	}, {
		name:   "headless without ready endpoints",
		si:     serviceImport{Headless: true, Ports: ports},
		slices: []*discoveryv1.EndpointSlice{mcsSlice("db-east", "east", discoveryv1.AddressTypeIPv4, endpoint("db-0", false, "10.1.0.5"))},
	}, {
		name: "headless slice without a source cluster is the local cluster's",
		si:   serviceImport{Headless: true},
		slices: []*discoveryv1.EndpointSlice{
			mcsSlice("db-here", "", discoveryv1.AddressTypeIPv6, endpoint("", true, "fd00::1")),
		},
		want: `db.shop.svc.clusterset.local fd00::1
fd00--1.here.db.shop.svc.clusterset.local fd00::1`,
	}, {
		name: "headless with a bad cluster id and a bad hostname",
		si:   serviceImport{Headless: true},
		slices: []*discoveryv1.EndpointSlice{
			mcsSlice("db-bad", "Not_A_Label", discoveryv1.AddressTypeIPv4, endpoint("db-0", true, "10.9.0.1")),
			mcsSlice("db-east", "east", discoveryv1.AddressTypeIPv4, endpoint("db_0", true, "10.1.0.1")),
		},
		want:    "db.shop.svc.clusterset.local 10.1.0.1",
		wantErr: `source cluster "Not_A_Label" is not a DNS label`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			si := tc.si
			si.Namespace, si.Name = "shop", "web"
			if si.Headless {
				si.Name = "db"
			}
			entries, errs := serviceImportEntries(&si, keptSlices(tc.slices), "clusterset.local", "here")
			if got := render(entries); got != tc.want {
				t.Errorf("entries:\n%s\nwant:\n%s", got, tc.want)
			}
			var msgs []string
			for _, err := range errs {
				msgs = append(msgs, err.Error())
			}
			if all := strings.Join(msgs, "\n"); tc.wantErr == "" && all != "" || !strings.Contains(all, tc.wantErr) {
				t.Errorf("errors %q, want one with %q", all, tc.wantErr)
			}
			for _, e := range entries {
				if err := table.ValidateHost(e.Host); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
