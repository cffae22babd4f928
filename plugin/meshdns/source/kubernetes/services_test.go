package kubernetes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/plugin/meshdns/source/kubewatch"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func service(ns, name string, clusterIPs ...string) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	if len(clusterIPs) > 0 {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = clusterIPs[0], clusterIPs
	}
	return svc
}

// kept is svc as the shared informer keeps it for this source.
func kept(svc *corev1.Service) *kubewatch.Service {
	return kubewatch.NewService(svc, (&Source{}).serviceNeeds())
}

// keptSlices are the slices as the informer keeps them.
func keptSlices(in []*discoveryv1.EndpointSlice) []*kubewatch.EndpointSlice {
	var out []*kubewatch.EndpointSlice
	for _, s := range in {
		out = append(out, kubewatch.NewEndpointSlice(s, kubewatch.SliceLabels...))
	}
	return out
}

type ep struct {
	ip, hostname string
	ready        *bool
}

func slice(name string, family discoveryv1.AddressType, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name}, AddressType: family}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.hostname != "" {
			h := e.hostname
			x.Hostname = &h
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

var yes, no = func() *bool { b := true; return &b }(), func() *bool { b := false; return &b }()

// summary renders entries as "host=addr,addr|short|ns" lines, sorted, for comparison.
func summary(es []table.Entry) []string {
	var out []string
	for _, e := range es {
		var as []string
		for _, a := range e.Addrs {
			as = append(as, a.String())
		}
		line := fmt.Sprintf("%s=%s|%s|%s", e.Host, strings.Join(as, ","), e.ShortName, e.Namespace)
		if e.Alias != "" {
			line += "->" + e.Alias
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

func TestServiceEntries(t *testing.T) {
	headless := service("data", "db", corev1.ClusterIPNone)
	notReady := service("data", "db", corev1.ClusterIPNone)
	notReady.Spec.PublishNotReadyAddresses = true
	external := service("ns", "ext")
	external.Spec.Type, external.Spec.ExternalName = corev1.ServiceTypeExternalName, "api.example.com"
	badExternal := service("ns", "ext")
	badExternal.Spec.Type, badExternal.Spec.ExternalName = corev1.ServiceTypeExternalName, "not a host"
	dbSlices := []*discoveryv1.EndpointSlice{
		slice("db-b", discoveryv1.AddressTypeIPv4, ep{ip: "10.1.0.2", hostname: "db-1", ready: yes}, ep{ip: "10.1.0.3", hostname: "db-2", ready: no}),
		slice("db-a", discoveryv1.AddressTypeIPv4, ep{ip: "10.1.0.1", hostname: "db-0"}, ep{ip: "10.1.0.2", hostname: "db-1", ready: yes}), // repeated across slices
		slice("db-v6", discoveryv1.AddressTypeIPv6, ep{ip: "fd00::1", hostname: "db-0"}),
		slice("db-fqdn", discoveryv1.AddressTypeFQDN, ep{ip: "db.example.com"}),
	}
	tests := []struct {
		name    string
		svc     *corev1.Service
		slices  []*discoveryv1.EndpointSlice
		want    []string
		wantErr string
	}{
		{"cluster IP", service("ns", "web", "10.96.0.1"), nil,
			[]string{"web.ns.svc.cluster.local.=10.96.0.1|web|ns"}, ""},
		{"dual stack", service("ns", "web", "10.96.0.1", "fd00:10:96::1"), nil,
			[]string{"web.ns.svc.cluster.local.=10.96.0.1,fd00:10:96::1|web|ns"}, ""},
		{"not allocated yet", service("ns", "web"), nil, nil, ""},
		{"bad cluster IP", service("ns", "web", "10.96.0.300"), nil, nil, "clusterIP"},
		{"headless: ready endpoints, per-pod names, families merged", headless, dbSlices, []string{
			"db-0.db.data.svc.cluster.local.=10.1.0.1,fd00::1|db-0.db|data",
			"db-1.db.data.svc.cluster.local.=10.1.0.2|db-1.db|data",
			"db.data.svc.cluster.local.=10.1.0.1,10.1.0.2,fd00::1|db|data",
		}, ""},
		{"headless with publishNotReadyAddresses", notReady, dbSlices[:1], []string{
			"db-1.db.data.svc.cluster.local.=10.1.0.2|db-1.db|data",
			"db-2.db.data.svc.cluster.local.=10.1.0.3|db-2.db|data",
			"db.data.svc.cluster.local.=10.1.0.2,10.1.0.3|db|data",
		}, ""},
		{"headless without endpoints is a known name", headless, nil,
			[]string{"db.data.svc.cluster.local.=|db|data"}, ""},
		{"external name", external, nil, []string{"ext.ns.svc.cluster.local.=|ext|ns->api.example.com"}, ""},
		{"bad external name", badExternal, nil, nil, `externalName "not a host"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := serviceEntries(kept(tc.svc), keptSlices(tc.slices), "cluster.local", "c1")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := summary(got); !slices.Equal(s, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(s, "\n"), strings.Join(tc.want, "\n"))
			}
			for _, e := range got {
				if e.Registry != table.RegistryKubernetes || e.Cluster != "c1" {
					t.Errorf("%s: registry %q cluster %q", e.Host, e.Registry, e.Cluster)
				}
			}
		})
	}
}

func TestServiceEntryEntries(t *testing.T) {
	tests := []struct {
		name    string
		se      serviceEntry
		want    []string
		wantErr int
	}{
		{"addresses in spec, every host", serviceEntry{Hosts: []string{"a.example.com", "b.example.com"}, Addresses: []string{"240.0.0.1", "240.0.0.1", "2001:db8::1"}},
			[]string{"a.example.com=240.0.0.1,2001:db8::1||", "b.example.com=240.0.0.1,2001:db8::1||"}, 0},
		{"CIDRs name no host", serviceEntry{Hosts: []string{"c.example.com"}, Addresses: []string{"10.0.0.0/24"},
			Allocated: []allocatedAddress{{Value: "240.240.0.9"}}}, nil, 0},
		{"allocated in status, per host", serviceEntry{Hosts: []string{"a.example.com", "b.example.com"},
			Allocated: []allocatedAddress{{Host: "a.example.com", Value: "240.240.0.1"}, {Host: "b.example.com", Value: "240.240.0.2"}}},
			[]string{"a.example.com=240.240.0.1||", "b.example.com=240.240.0.2||"}, 0},
		{"only IPs", serviceEntry{Hosts: []string{"db.example.com"}, Addresses: []string{"10.0.0.5", "unix:///sock", "db.internal", "0.0.0.0"}},
			[]string{"db.example.com=10.0.0.5||"}, 0},
		{"without any address", serviceEntry{Hosts: []string{"x.example.com"}}, nil, 0},
		{"wildcard", serviceEntry{Hosts: []string{"*.wild.example.com"}, Addresses: []string{"240.0.0.9"}}, []string{"*.wild.example.com=240.0.0.9||"}, 0},
		{"bad host skipped, others kept", serviceEntry{Hosts: []string{"bad host", "ok.example.com"}, Addresses: []string{"240.0.0.2"}}, []string{"ok.example.com=240.0.0.2||"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := serviceEntryEntries(&tc.se, "")
			if len(errs) != tc.wantErr {
				t.Errorf("errors %v, want %d", errs, tc.wantErr)
			}
			if s := summary(got); !slices.Equal(s, tc.want) {
				t.Errorf("got %v, want %v", s, tc.want)
			}
		})
	}
}

func TestClientIndex(t *testing.T) {
	pod := func(ns string, hostNetwork bool, phase corev1.PodPhase, ips ...string) any {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}
		p.Spec.HostNetwork, p.Status.Phase = hostNetwork, phase
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		return newClientPod(p)
	}
	var c clientIndex
	if _, ok := c.NamespaceOf(netip.MustParseAddr("10.0.0.1")); ok {
		t.Fatal("an empty index knows a client")
	}
	n := c.rebuild([]any{
		pod("a", false, corev1.PodRunning, "10.0.0.1", "fd00::1"),
		pod("b", true, corev1.PodRunning, "192.168.0.1"), // the node's address: every host-network pod has it
		pod("c", false, corev1.PodSucceeded, "10.0.0.3"),
		pod("d", false, corev1.PodPending, "10.0.0.4"),
	})
	if n != 3 {
		t.Errorf("%d addresses indexed, want 3", n)
	}
	for addr, want := range map[string]string{"10.0.0.1": "a", "::ffff:10.0.0.1": "a", "fd00::1": "a", "10.0.0.4": "d", "192.168.0.1": "", "10.0.0.3": ""} {
		got, ok := c.NamespaceOf(netip.MustParseAddr(addr))
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", addr, got, ok, want)
		}
	}
}

func TestIsDNS1123Label(t *testing.T) {
	for _, s := range []string{"", "a", "0", "web-0", "-a", "a-", "a--b", "A", "a.b", "a_b", "é", strings.Repeat("a", 63), strings.Repeat("a", 64), "pod-12", "1-2"} {
		if got, want := isDNS1123Label(s), len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("isDNS1123Label(%q) = %v, validation says %v", s, got, want)
		}
	}
}
