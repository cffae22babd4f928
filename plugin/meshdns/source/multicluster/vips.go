package multicluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
)

// vipAllocator hands each exported service a virtual IP per range that does not change while the
// service exists, and keeps them in a file so that they survive a restart. A service's first
// candidate is a hash of its name, so two resolvers that never shared a file mostly agree too.
type vipAllocator struct {
	ranges []netip.Prefix
	path   string
	byKey  map[string][]netip.Addr // "ns/name" -> one address per range
	used   map[netip.Addr]string
}

// vipFile is the state file's format.
type vipFile struct {
	VIPs map[string][]string `json:"vips"`
}

func newVIPAllocator(ranges []netip.Prefix, path string) (*vipAllocator, error) {
	v := &vipAllocator{ranges: ranges, path: path, byKey: map[string][]netip.Addr{}, used: map[netip.Addr]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return v, nil
	}
	if err != nil {
		return nil, fmt.Errorf("vip_state: %w", err)
	}
	var f vipFile
	if len(b) == 0 {
		return v, nil // created empty (by an installer): nothing kept yet
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("vip_state %s: %w", path, err)
	}
	for key, ss := range f.VIPs {
		var addrs []netip.Addr
		for i, s := range ss {
			a, err := netip.ParseAddr(s)
			// An address outside today's ranges (the ranges changed) is allocated afresh.
			if err != nil || i >= len(ranges) || !ranges[i].Contains(a) || v.used[a] != "" {
				addrs = nil
				break
			}
			addrs = append(addrs, a)
		}
		if len(addrs) == len(ranges) {
			v.byKey[key] = addrs
			for _, a := range addrs {
				v.used[a] = key
			}
		}
	}
	return v, nil
}

// sync gives every key in keys its addresses and releases those of keys gone, saving the file when
// anything changed. It returns the addresses by key.
func (v *vipAllocator) sync(keys []string) (map[string][]netip.Addr, error) {
	changed := false
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	for k, addrs := range v.byKey {
		if !want[k] {
			for _, a := range addrs {
				delete(v.used, a)
			}
			delete(v.byKey, k)
			changed = true
		}
	}
	for _, k := range keys {
		if _, ok := v.byKey[k]; ok {
			continue
		}
		var addrs []netip.Addr
		for _, r := range v.ranges {
			a, ok := v.allocate(r, k)
			if !ok {
				return v.byKey, fmt.Errorf("vips: %s is full; %s has no virtual IP", r, k)
			}
			addrs = append(addrs, a)
			v.used[a] = k
		}
		v.byKey[k] = addrs
		changed = true
	}
	if changed {
		return v.byKey, v.save()
	}
	return v.byKey, nil
}

// allocate finds a free address of r for key, starting at the hash of key and probing onwards; the
// range's first and last addresses (network, broadcast) are never used.
func (v *vipAllocator) allocate(r netip.Prefix, key string) (netip.Addr, bool) {
	hostBits := r.Addr().BitLen() - r.Bits()
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	usable := new(big.Int).Sub(size, big.NewInt(2))
	h := fnv.New64a()
	h.Write([]byte(key))
	start := new(big.Int).Mod(new(big.Int).SetUint64(h.Sum64()), usable)
	base := new(big.Int).SetBytes(r.Masked().Addr().AsSlice())
	limit := usable
	if limit.Cmp(big.NewInt(1<<20)) > 0 {
		limit = big.NewInt(1 << 20) // a full range is not walked whole
	}
	for i := int64(0); i < limit.Int64(); i++ {
		off := new(big.Int).Add(start, big.NewInt(i))
		off.Mod(off, usable).Add(off, big.NewInt(1))
		n := new(big.Int).Add(base, off)
		b := make([]byte, r.Addr().BitLen()/8)
		n.FillBytes(b)
		a, _ := netip.AddrFromSlice(b)
		if v.used[a] == "" {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// save writes the state file by rename, so that a crash leaves the old or the new file whole.
func (v *vipAllocator) save() error {
	f := vipFile{VIPs: map[string][]string{}}
	keys := make([]string, 0, len(v.byKey))
	for k := range v.byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, a := range v.byKey[k] {
			f.VIPs[k] = append(f.VIPs[k], a.String())
		}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := v.path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(v.path), 0o755); err != nil {
		return fmt.Errorf("vip_state: %w", err)
	}
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("vip_state: %w", err)
	}
	if err := os.Rename(tmp, v.path); err != nil {
		return fmt.Errorf("vip_state: %w", err)
	}
	return nil
}
