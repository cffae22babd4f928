package nds

import (
	"fmt"
	"hash/maphash"

	"github.com/meshdns/meshdns/plugin/meshdns/pace"
	"github.com/meshdns/meshdns/plugin/meshdns/table"

	"google.golang.org/protobuf/encoding/protowire"
)

// differ turns each state-of-the-world NameTable push into what changed since the last one it
// applied, reading every entry's bytes but decoding only the entries whose bytes differ. istiod
// sends the whole table on every change: decoding 10k names into entries, grouping and comparing
// them cost tens of milliseconds and megabytes of garbage per push on the serving core, where
// hashing each entry's bytes and looking its host up costs a fraction of that and allocates nothing
// for an unchanged host. A host's hash is maphash's, seeded per differ: the control plane cannot
// aim a collision at it, and a chance one (2^-64 for each changed host) would keep an old entry
// until the host changes again. An entry whose hash is that of a host's only entry in the last push
// is that entry unchanged: it is matched by its hash alone, without reading its host, which is
// most of a push.
type differ struct {
	seed  maphash.Seed
	index map[string]int32 // canonical host -> its slot
	bySum map[uint64]int32 // hash of a host's only entry in the last push applied -> its slot
	slots []hostSlot
	free  []int32 // slots of removed hosts, for reuse
	live  int     // hosts of the last push applied
	once  bool    // a push was applied
	gen   uint32  // pushes read, the one being read included
	dec   decoder
	pace  pace.Pacer

	key     []byte     // the canonical host being looked up
	touched []int32    // slots the push being read names, in order of first appearance
	repeats []repeat   // second and later entries of a host in the push being read
	added   []int32    // slots made for the push being read, dropped when it fails
	scratch [][2]int32 // byte ranges of the push's entries of one host, while decoding it
}

// hostSlot is what the differ knows of one canonical host.
type hostSlot struct {
	host    string
	sum     uint64 // of the host's entries in the last push applied
	next    uint64 // of its entries in the push being read
	gen     uint32 // the last push that named the host
	at      [2]int32
	applied bool // sum is that of an applied push (false: new in the push being read)
	many    bool // named by several entries in the push being read (hosts differing in case)
	inSum   bool // bySum holds sum: the last push applied named the host once
}

// repeat is a later entry of a host in one push, at a byte range of the push.
type repeat struct {
	slot int32
	at   [2]int32
}

func newDiffer() *differ {
	return &differ{seed: maphash.MakeSeed(), index: map[string]int32{}, bySum: map[uint64]int32{},
		dec: decoder{interned: map[string]string{}}}
}

// maxInterned bounds the strings the decoder keeps shared across pushes (registries, namespaces):
// past it, it starts afresh, so namespaces that come and go do not pile up.
const maxInterned = 1 << 14

// apply reads push b and returns the entries of every host that is new or changed, in the order of
// the push, and the canonical hosts it no longer names. On an error nothing is applied: the next
// push is compared with the last one applied. first reports whether nothing was applied before:
// changed then holds the whole table.
func (d *differ) apply(b []byte) (changed []table.Entry, removed []string, first bool, err error) {
	if len(b) > 1<<31-1 {
		return nil, nil, false, fmt.Errorf("NameTable of %d bytes: too large", len(b))
	}
	d.gen++
	d.touched, d.repeats, d.added = d.touched[:0], d.repeats[:0], d.added[:0]
	if err := d.read(b); err != nil {
		d.rollback()
		return nil, nil, false, err
	}
	first = !d.once
	changed, err = d.decodeChanged(b)
	if err != nil {
		d.rollback()
		return nil, nil, false, err
	}
	removed = d.commit()
	d.once = true
	if len(d.dec.interned) > maxInterned {
		d.dec.interned = map[string]string{}
	}
	return changed, removed, first, nil
}

// read hashes every entry of push b under its canonical host.
func (d *differ) read(b []byte) error {
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Errorf("NameTable: %v", protowire.ParseError(n))
		}
		off += n
		if num != fieldTable || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b[off:]); n < 0 {
				return fmt.Errorf("NameTable field %d: %v", num, protowire.ParseError(n))
			}
			off += n // an unknown field: newer control planes may add some
			continue
		}
		entry, n := protowire.ConsumeBytes(b[off:])
		if n < 0 {
			return fmt.Errorf("NameTable entry %d: %v", len(d.touched)+len(d.repeats)+1, protowire.ParseError(n))
		}
		at := [2]int32{int32(off + n - len(entry)), int32(off + n)}
		off += n
		d.pace.Tick()
		sum := maphash.Bytes(d.seed, entry)
		if i, ok := d.bySum[sum]; ok && d.slots[i].gen != d.gen {
			s := &d.slots[i]
			s.gen, s.next, s.at, s.many = d.gen, sum, at, false
			d.touched = append(d.touched, i)
			continue
		}
		host, err := entryHost(entry)
		if err != nil {
			return err
		}
		d.key = appendCanonical(d.key[:0], host)
		i, ok := d.index[string(d.key)] // the compiler does not copy the key for this lookup
		if !ok {
			i = d.newSlot(string(d.key))
		}
		s := &d.slots[i]
		if s.gen == d.gen {
			// Another entry of the host (another case of it, or the same host again, which decoding
			// rejects): the host's sum covers them all, in order.
			s.next = s.next*0x9e3779b97f4a7c15 + sum
			s.many = true
			d.repeats = append(d.repeats, repeat{slot: i, at: at})
			continue
		}
		s.gen, s.next, s.at, s.many = d.gen, sum, at, false
		d.touched = append(d.touched, i)
	}
	return nil
}

func (d *differ) newSlot(host string) int32 {
	var i int32
	if n := len(d.free); n > 0 {
		i, d.free = d.free[n-1], d.free[:n-1]
		d.slots[i] = hostSlot{host: host}
	} else {
		i = int32(len(d.slots))
		d.slots = append(d.slots, hostSlot{host: host})
	}
	d.index[host] = i
	d.added = append(d.added, i)
	return i
}

// decodeChanged decodes the entries of the hosts that are new, changed or named more than once.
func (d *differ) decodeChanged(b []byte) ([]table.Entry, error) {
	var out []table.Entry
	var many map[int32][][2]int32 // the later entries of hosts named more than once
	for _, r := range d.repeats {
		if many == nil {
			many = map[int32][][2]int32{}
		}
		many[r.slot] = append(many[r.slot], r.at)
	}
	for _, i := range d.touched {
		s := &d.slots[i]
		if s.applied && s.next == s.sum && !s.many {
			continue
		}
		d.scratch = append(d.scratch[:0], s.at)
		d.scratch = append(d.scratch, many[i]...)
		start := len(out)
		for _, at := range d.scratch {
			d.pace.Tick()
			e, err := d.dec.mapEntry(b[at[0]:at[1]])
			if err != nil {
				return nil, err
			}
			for _, prev := range out[start:] {
				if prev.Host == e.Host {
					return nil, fmt.Errorf("host %q: given twice", e.Host)
				}
			}
			out = append(out, e)
		}
		if s.applied && s.next == s.sum {
			out = out[:start] // named several times, as before: checked, unchanged
		}
	}
	return out, nil
}

// commit makes the push just read the last one applied and returns the hosts it no longer names.
func (d *differ) commit() []string {
	for _, i := range d.touched {
		d.pace.Tick()
		s := &d.slots[i]
		if s.inSum && (s.next != s.sum || s.many) {
			delete(d.bySum, s.sum)
			s.inSum = false
		}
		s.sum, s.applied = s.next, true
		if !s.many && !s.inSum {
			d.bySum[s.sum], s.inSum = i, true
		}
	}
	var removed []string
	if len(d.touched)-(len(d.added)) < d.live {
		for i := range d.slots {
			d.pace.Tick()
			s := &d.slots[i]
			if s.applied && s.gen != d.gen {
				removed = append(removed, s.host)
				delete(d.index, s.host)
				if s.inSum {
					delete(d.bySum, s.sum)
				}
				*s = hostSlot{}
				d.free = append(d.free, int32(i))
			}
		}
	}
	d.live = len(d.touched)
	return removed
}

// rollback forgets the hosts that a push which failed added.
func (d *differ) rollback() {
	for _, i := range d.added {
		delete(d.index, d.slots[i].host)
		d.slots[i] = hostSlot{}
		d.free = append(d.free, i)
	}
	d.added = d.added[:0]
}

// entryHost returns the key of a NameTable map entry without copying it.
func entryHost(b []byte) ([]byte, error) {
	var host []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("NameTable entry: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num == fieldMapKey && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("NameTable entry key: %v", protowire.ParseError(n))
			}
			host, b = v, b[n:] // the last key wins, as in decoding
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil, fmt.Errorf("NameTable entry field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return host, nil
}

// appendCanonical appends host's canonical form (lower case, a final dot), as table.CanonicalHost
// makes it, without allocating.
func appendCanonical(dst, host []byte) []byte {
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	if len(host) == 0 || host[len(host)-1] != '.' {
		dst = append(dst, '.')
	}
	return dst
}
