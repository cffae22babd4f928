// Package ambient is the name table source that follows istiod's workload discovery, the table
// ztunnel answers DNS from in an ambient mesh: Address resources (a Workload or a Service) over delta
// ADS.
package ambient

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/encoding/protowire"
)

// TypeURL is the xDS type of istiod's workload discovery.
const TypeURL = "type.googleapis.com/istio.workload.Address"

// The fields of istio.workload (istio.io/istio pkg/workloadapi/workload.proto) that name hosts and
// clients. They are decoded by hand, as nds decodes its NameTable: the istio.io/istio module would
// bring its whole dependency graph (newer Envoy and gRPC, older Kubernetes) for a few fields.
//
//	message Address { oneof type { Workload workload = 1; Service service = 2; } }
//	message Service { string name = 1; string namespace = 2; string hostname = 3;
//	  repeated NetworkAddress addresses = 4; IPFamilies ip_families = 9; bool canonical = 11;
//	  Visibility visibility = 14; }
//	message NetworkAddress { string network = 1; bytes address = 2; optional uint32 length = 3; }
//	message Workload { string uid = 20; string name = 1; string namespace = 2;
//	  repeated bytes addresses = 3; string hostname = 21; string network = 4; string node = 9;
//	  WorkloadType workload_type = 12; map<string, PortList> services = 22;
//	  WorkloadStatus status = 17; string cluster_id = 18; NetworkMode network_mode = 25; }
const (
	fieldAddressWorkload = 1
	fieldAddressService  = 2

	fieldServiceName       = 1
	fieldServiceNamespace  = 2
	fieldServiceHostname   = 3
	fieldServiceAddresses  = 4
	fieldServiceIPFamilies = 9
	fieldServiceCanonical  = 11
	fieldServiceVisibility = 14

	fieldNetAddrNetwork = 1
	fieldNetAddrAddress = 2
	fieldNetAddrLength  = 3

	fieldWorkloadUID         = 20
	fieldWorkloadName        = 1
	fieldWorkloadNamespace   = 2
	fieldWorkloadAddresses   = 3
	fieldWorkloadHostname    = 21
	fieldWorkloadNetwork     = 4
	fieldWorkloadNode        = 9
	fieldWorkloadType        = 12
	fieldWorkloadServices    = 22
	fieldWorkloadStatus      = 17
	fieldWorkloadClusterID   = 18
	fieldWorkloadNetworkMode = 25

	fieldMapKey = 1
)

// Enum values used.
const (
	visibilityNamespace = 1 // Service.Visibility NAMESPACE
	statusUnhealthy     = 1 // WorkloadStatus UNHEALTHY
	networkModeHost     = 1 // NetworkMode HOST_NETWORK
	workloadTypePod     = 2 // WorkloadType POD
)

// Service is what a Service resource tells DNS.
type Service struct {
	Name, Namespace, Hostname string
	Addresses                 []NetworkAddress
	IPFamilies                uint64
	Canonical                 bool
	// NamespaceOnly is visibility NAMESPACE: only clients of Namespace may resolve it.
	NamespaceOnly bool
}

// NetworkAddress is an address on a network ("" for every network); CIDR ranges name no host.
type NetworkAddress struct {
	Network string
	Addr    netip.Addr
	CIDR    bool
}

// Workload is what a Workload resource tells DNS: the addresses of a headless Service's endpoints,
// and whose a client address is.
type Workload struct {
	UID, Name, Namespace, Network, Node, ClusterID string
	// Hostname is set on workloads reached by a DNS name rather than addresses.
	Hostname    string
	Addrs       []netip.Addr
	Services    []string // "namespace/hostname" of each Service the workload is an endpoint of, sorted
	Healthy     bool
	HostNetwork bool
	Pod         bool
}

// DecodeAddress decodes a serialised istio.workload.Address: exactly one of the results is set.
// Errors say what is wrong and with what (the Service's hostname, the Workload's uid).
func DecodeAddress(b []byte) (*Workload, *Service, error) {
	var (
		w   *Workload
		s   *Service
		err error
	)
	err = fields(b, "Address", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType || num != fieldAddressWorkload && num != fieldAddressService {
			return nil
		}
		if w != nil || s != nil {
			return errors.New("an Address with more than one Workload or Service")
		}
		if num == fieldAddressWorkload {
			w, err = decodeWorkload(v)
		} else {
			s, err = decodeService(v)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if w == nil && s == nil {
		return nil, nil, errors.New("an Address with neither a Workload nor a Service")
	}
	return w, s, nil
}

func decodeService(b []byte) (*Service, error) {
	s := &Service{}
	err := fields(b, "Service", func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fieldServiceName && typ == protowire.BytesType:
			s.Name = string(v)
		case num == fieldServiceNamespace && typ == protowire.BytesType:
			s.Namespace = string(v)
		case num == fieldServiceHostname && typ == protowire.BytesType:
			s.Hostname = string(v)
		case num == fieldServiceAddresses && typ == protowire.BytesType:
			a, err := decodeNetworkAddress(v)
			if err != nil {
				return err
			}
			s.Addresses = append(s.Addresses, a)
		case num == fieldServiceIPFamilies && typ == protowire.VarintType:
			s.IPFamilies = x
		case num == fieldServiceCanonical && typ == protowire.VarintType:
			s.Canonical = x != 0
		case num == fieldServiceVisibility && typ == protowire.VarintType:
			s.NamespaceOnly = x == visibilityNamespace
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", s.Namespace+"/"+s.Hostname, err)
	}
	if err := table.ValidateHost(s.Hostname); err != nil {
		return nil, fmt.Errorf("service %q: hostname %w", s.Namespace+"/"+s.Hostname, err)
	}
	return s, nil
}

func decodeNetworkAddress(b []byte) (NetworkAddress, error) {
	var a NetworkAddress
	var raw []byte
	err := fields(b, "NetworkAddress", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == fieldNetAddrNetwork && typ == protowire.BytesType:
			a.Network = string(v)
		case num == fieldNetAddrAddress && typ == protowire.BytesType:
			raw = v
		case num == fieldNetAddrLength && typ == protowire.VarintType:
			a.CIDR = true // present, even zero: a range, not a host
		}
		return nil
	})
	if err != nil {
		return a, err
	}
	if a.Addr, err = ipOf(raw); err != nil {
		return a, err
	}
	return a, nil
}

func decodeWorkload(b []byte) (*Workload, error) {
	w := &Workload{Healthy: true}
	err := fields(b, "Workload", func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if typ == protowire.VarintType {
			switch num {
			case fieldWorkloadType:
				w.Pod = x == workloadTypePod
			case fieldWorkloadStatus:
				w.Healthy = x != statusUnhealthy
			case fieldWorkloadNetworkMode:
				w.HostNetwork = x == networkModeHost
			}
			return nil
		}
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fieldWorkloadUID:
			w.UID = string(v)
		case fieldWorkloadName:
			w.Name = string(v)
		case fieldWorkloadNamespace:
			w.Namespace = string(v)
		case fieldWorkloadHostname:
			w.Hostname = string(v)
		case fieldWorkloadNetwork:
			w.Network = string(v)
		case fieldWorkloadNode:
			w.Node = string(v)
		case fieldWorkloadClusterID:
			w.ClusterID = string(v)
		case fieldWorkloadAddresses:
			a, err := ipOf(v)
			if err != nil {
				return err
			}
			w.Addrs = append(w.Addrs, a)
		case fieldWorkloadServices:
			key, err := mapKey(v)
			if err != nil {
				return err
			}
			ns, host, ok := strings.Cut(key, "/")
			if !ok || ns == "" || host == "" {
				return fmt.Errorf("services: %q is not namespace/hostname", key)
			}
			w.Services = append(w.Services, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("workload %q: %w", w.Namespace+"/"+w.Name, err)
	}
	slices.Sort(w.Services)
	w.Services = slices.Compact(w.Services)
	return w, nil
}

// ipOf reads an address as the proto carries it: 4 or 16 bytes. A v4-mapped one is answered as v4.
func ipOf(b []byte) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.Addr{}, fmt.Errorf("address of %d bytes, want 4 or 16", len(b))
	}
	return a.Unmap(), nil
}

// mapKey reads the key of a map<string, ...> entry.
func mapKey(b []byte) (string, error) {
	var key string
	err := fields(b, "map entry", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == fieldMapKey && typ == protowire.BytesType {
			key = string(v)
		}
		return nil
	})
	return key, err
}

// fields walks the fields of message b, handing each to f: the bytes of a length-delimited field, or
// the value of a varint. Unknown fields and types are skipped: newer istiods add fields.
func fields(b []byte, message string, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%s: %v", message, protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%s field %d: %v", message, num, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType || typ == protowire.VarintType {
			if err := f(num, typ, v, x); err != nil {
				return err
			}
		}
	}
	return nil
}
