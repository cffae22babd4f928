package xds

import (
	"bytes"
	"strings"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func testResponse() *discovery.DiscoveryResponse {
	return &discovery.DiscoveryResponse{VersionInfo: "7", TypeUrl: "type.googleapis.com/istio.networking.nds.v1.NameTable",
		Nonce: "n1", Resources: []*anypb.Any{
			{TypeUrl: "type.googleapis.com/istio.networking.nds.v1.NameTable", Value: []byte("\x0a\x03abc")},
			{TypeUrl: "t2"},
		}}
}

// TestResponseCodecAsProto checks that the codec decodes responses as proto.Unmarshal does, with the
// resources' values pointing into the message's bytes rather than copied.
func TestResponseCodecAsProto(t *testing.T) {
	b, err := proto.Marshal(testResponse())
	if err != nil {
		t.Fatal(err)
	}
	// An unknown field at the top and one inside an Any, which proto keeps.
	withUnknown := protowire.AppendTag(bytes.Clone(b), 99, protowire.VarintType)
	withUnknown = protowire.AppendVarint(withUnknown, 5)
	anyUnknown := protowire.AppendTag(nil, 1, protowire.BytesType)
	anyUnknown = protowire.AppendString(anyUnknown, "t3")
	anyUnknown = protowire.AppendTag(anyUnknown, 7, protowire.VarintType)
	anyUnknown = protowire.AppendVarint(anyUnknown, 1)
	withUnknown = protowire.AppendTag(withUnknown, fieldResources, protowire.BytesType)
	withUnknown = protowire.AppendBytes(withUnknown, anyUnknown)
	for name, in := range map[string][]byte{"plain": b, "unknown fields": withUnknown} {
		got, want := &discovery.DiscoveryResponse{}, &discovery.DiscoveryResponse{}
		if err := newResponseCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(in)}, got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := proto.Unmarshal(in, want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	got := &discovery.DiscoveryResponse{}
	if err := unmarshalResponse(b, got); err != nil {
		t.Fatal(err)
	}
	v := got.Resources[0].Value
	if i := bytes.Index(b, v); i < 0 || &b[i] != &v[0] {
		t.Error("the resource's value is a copy, not a part of the message")
	}
}

// TestResponseCodecRejects checks the errors proto.Unmarshal gives: a truncated message, a type URL
// that is not UTF-8.
func TestResponseCodecRejects(t *testing.T) {
	b, _ := proto.Marshal(testResponse())
	bad := protowire.AppendTag(nil, fieldResources, protowire.BytesType)
	bad = protowire.AppendBytes(bad, protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff"))
	for name, in := range map[string][]byte{"truncated": b[:len(b)-2], "type URL": bad} {
		err := unmarshalResponse(in, &discovery.DiscoveryResponse{})
		if err == nil || proto.Unmarshal(in, &discovery.DiscoveryResponse{}) == nil {
			t.Errorf("%s: error %v, and proto's must fail too", name, err)
		}
		if name == "type URL" && !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

// FuzzResponseCodec: any bytes decode as proto.Unmarshal decodes them, or fail where it fails.
func FuzzResponseCodec(f *testing.F) {
	b, _ := proto.Marshal(testResponse())
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Fuzz(func(t *testing.T, in []byte) {
		got, want := &discovery.DiscoveryResponse{}, &discovery.DiscoveryResponse{}
		err, werr := unmarshalResponse(in, got), proto.Unmarshal(in, want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("codec error %v, proto error %v", err, werr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
}

// BenchmarkResponseCodec is the decoding of a push of one 1 MB resource (a 10k-name NameTable's
// size), received as HTTP/2 frames of 16 KiB, by this codec and by gRPC's proto codec.
func BenchmarkResponseCodec(b *testing.B) {
	r := testResponse()
	r.Resources = r.Resources[:1]
	r.Resources[0].Value = bytes.Repeat([]byte{0x0a, 0x03, 'a', 'b', 'c'}, 200_000)
	in, _ := proto.Marshal(r)
	var frames mem.BufferSlice
	for b := in; len(b) > 0; {
		n := min(len(b), 16<<10)
		frames, b = append(frames, mem.SliceBuffer(b[:n])), b[n:]
	}
	for name, c := range map[string]interface {
		Unmarshal(mem.BufferSlice, any) error
	}{"meshdns": newResponseCodec(), "proto": newResponseCodec().proto} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if err := c.Unmarshal(frames, &discovery.DiscoveryResponse{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
