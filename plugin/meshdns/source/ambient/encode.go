package ambient

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// EncodeService and EncodeWorkload write Address resources as protoc-generated Go code lays them out
// (fields in number order, map entries key then value): for tests, here and of the plugin, that play
// istiod without one.

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// EncodeService serialises an Address holding s.
func EncodeService(s *Service) []byte {
	var m []byte
	m = appendString(m, fieldServiceName, s.Name)
	m = appendString(m, fieldServiceNamespace, s.Namespace)
	m = appendString(m, fieldServiceHostname, s.Hostname)
	for _, a := range s.Addresses {
		var na []byte
		na = appendString(na, fieldNetAddrNetwork, a.Network)
		na = protowire.AppendTag(na, fieldNetAddrAddress, protowire.BytesType)
		na = protowire.AppendBytes(na, a.Addr.AsSlice())
		if a.CIDR {
			na = protowire.AppendTag(na, fieldNetAddrLength, protowire.VarintType)
			na = protowire.AppendVarint(na, uint64(a.Addr.BitLen()))
		}
		m = appendMessage(m, fieldServiceAddresses, na)
	}
	m = appendVarint(m, fieldServiceIPFamilies, s.IPFamilies)
	if s.Canonical {
		m = appendVarint(m, fieldServiceCanonical, 1)
	}
	if s.NamespaceOnly {
		m = appendVarint(m, fieldServiceVisibility, visibilityNamespace)
	}
	return appendMessage(nil, fieldAddressService, m)
}

// EncodeWorkload serialises an Address holding w.
func EncodeWorkload(w *Workload) []byte {
	var m []byte
	m = appendString(m, fieldWorkloadName, w.Name)
	m = appendString(m, fieldWorkloadNamespace, w.Namespace)
	for _, a := range w.Addrs {
		m = protowire.AppendTag(m, fieldWorkloadAddresses, protowire.BytesType)
		m = protowire.AppendBytes(m, a.AsSlice())
	}
	m = appendString(m, fieldWorkloadNetwork, w.Network)
	m = appendString(m, fieldWorkloadNode, w.Node)
	if w.Pod {
		m = appendVarint(m, fieldWorkloadType, workloadTypePod)
	}
	if !w.Healthy {
		m = appendVarint(m, fieldWorkloadStatus, statusUnhealthy)
	}
	m = appendString(m, fieldWorkloadClusterID, w.ClusterID)
	m = appendString(m, fieldWorkloadUID, w.UID)
	m = appendString(m, fieldWorkloadHostname, w.Hostname)
	for _, key := range w.Services {
		var entry []byte
		entry = appendString(entry, fieldMapKey, key)
		entry = appendMessage(entry, 2, appendMessage(nil, 1, appendVarint(nil, 1, 80))) // PortList{ports: [{service_port: 80}]}
		m = appendMessage(m, fieldWorkloadServices, entry)
	}
	if w.HostNetwork {
		m = appendVarint(m, fieldWorkloadNetworkMode, networkModeHost)
	}
	return appendMessage(nil, fieldAddressWorkload, m)
}
