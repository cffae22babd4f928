package xds

import (
	"errors"
	"unicode/utf8"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec responseCodec defers to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// responseCodec decodes one stream's state-of-the-world DiscoveryResponses with their resources'
// bytes pointing into the message as gRPC received it, in its pool's buffer, which the codec holds
// until the next response and then gives back. The proto codec copies every resource out: a
// NameTable push is the whole table every time (a megabyte for 10k names), so each push left a
// megabyte of garbage for the collector to mark on the core that serves queries. A response's
// resources are therefore valid until the stream's next Recv, which Handler.Apply's contract says.
// Everything else goes to the proto codec.
type responseCodec struct {
	proto encoding.CodecV2
	held  mem.Buffer // the last response's bytes
}

func newResponseCodec() *responseCodec { return &responseCodec{proto: encoding.GetCodecV2("proto")} }

func (c *responseCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c *responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*discovery.DiscoveryResponse)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	c.release()
	// A reference of its own: gRPC frees data when this returns.
	c.held = data.MaterializeToBuffer(mem.DefaultBufferPool())
	return unmarshalResponse(c.held.ReadOnlyData(), m)
}

// release gives the last response's bytes back to gRPC's pool.
func (c *responseCodec) release() {
	if c.held != nil {
		c.held.Free()
		c.held = nil
	}
}

// Name is the content subtype the server sees: the messages are proto's.
func (*responseCodec) Name() string { return "proto" }

// fieldResources is DiscoveryResponse's repeated Any resources.
const fieldResources = 2

// unmarshalResponse decodes b into m as proto.Unmarshal would, the resources' values aliasing b.
func unmarshalResponse(b []byte, m *discovery.DiscoveryResponse) error {
	var rest []byte // every other field, for proto.Unmarshal: it is small
	var resources []*anypb.Any
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		field := off
		off += n
		n = protowire.ConsumeFieldValue(num, typ, b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num == fieldResources && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[off:])
			a, err := unmarshalAny(v)
			if err != nil {
				return err
			}
			resources = append(resources, a)
		} else {
			rest = append(rest, b[field:off+n]...)
		}
		off += n
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return err
	}
	m.Resources = resources
	return nil
}

// unmarshalAny decodes an Any with its value aliasing b; one with anything but its two fields goes
// to proto.Unmarshal, which keeps unknown fields.
func unmarshalAny(b []byte) (*anypb.Any, error) {
	a := &anypb.Any{}
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 || (num != 1 && num != 2) || typ != protowire.BytesType {
			return a, proto.Unmarshal(b, a)
		}
		v, m := protowire.ConsumeBytes(b[off+n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		off += n + m
		if num == 1 {
			if !utf8.Valid(v) {
				return nil, errInvalidTypeURL
			}
			a.TypeUrl = string(v) // the last one wins, as in proto
		} else {
			a.Value = v[:len(v):len(v)]
		}
	}
	return a, nil
}

var errInvalidTypeURL = errors.New("google.protobuf.Any.type_url: invalid UTF-8")
