package realstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

const nameTableType = "type.googleapis.com/istio.networking.nds.v1.NameTable"

// TestStack starts the real stack once and runs the smoke checks against it in order.
func TestStack(t *testing.T) {
	// ISTIO_DUAL_STACK: without it istiod gives even a dual-stack proxy one family per Service.
	st := Start(t, Options{IstiodEnv: []string{"ISTIO_DUAL_STACK=true"}})

	if _, err := st.CreateService("default", "web", "10.96.100.10"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateHeadlessService("default", "db", Endpoint{IP: "10.1.0.5", Hostname: "db-0"}, Endpoint{IP: "10.1.0.6", Hostname: "db-1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateServiceEntry("default", "ext", []string{"api.example.com"}, nil, "DNS"); err != nil {
		t.Fatal(err)
	}

	t.Run("nds", func(t *testing.T) {
		ads := dialADS(t, st.IstiodGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		nt := ads.waitFor(t, 30*time.Second, func(nt nameTable) bool {
			return slices.Contains(nt["web.default.svc.cluster.local"].ips, "10.96.100.10") &&
				len(nt["db.default.svc.cluster.local"].ips) == 2 &&
				len(nt["db-0.db.default.svc.cluster.local"].ips) == 1 &&
				len(nt["api.example.com"].ips) == 1
		})
		web := nt["web.default.svc.cluster.local"]
		if web.shortname != "web" || web.namespace != "default" || web.registry != "Kubernetes" {
			t.Errorf("web: %+v", web)
		}
		ext := nt["api.example.com"]
		if !strings.HasPrefix(ext.ips[0], "240.240.") {
			t.Errorf("ServiceEntry without addresses: want an auto-allocated 240.240.x.y, got %+v", ext)
		}
		t.Logf("first push: %d names; api.example.com=%+v db-0=%+v", len(nt), ext, nt["db-0.db.default.svc.cluster.local"])

		// How long a new Service takes to reach a connected client.
		begin := time.Now()
		if _, err := st.CreateService("default", "late"); err != nil {
			t.Fatal(err)
		}
		ads.waitFor(t, 30*time.Second, func(nt nameTable) bool { return len(nt["late.default.svc.cluster.local"].ips) > 0 })
		t.Logf("NDS push latency after creating a Service: %v", time.Since(begin).Round(time.Millisecond))

		begin = time.Now()
		if err := st.DeleteService("default", "late"); err != nil {
			t.Fatal(err)
		}
		ads.waitFor(t, 30*time.Second, func(nt nameTable) bool { _, ok := nt["late.default.svc.cluster.local"]; return !ok })
		t.Logf("NDS push latency after deleting a Service: %v", time.Since(begin).Round(time.Millisecond))
	})

	t.Run("helpers", func(t *testing.T) {
		ads := dialADS(t, st.IstiodGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if _, err := st.CreateService("ns2", "dual", "10.96.100.30", "fd00:10:96::30"); err != nil {
			t.Fatal(err)
		}
		if err := st.SetEndpoints("default", "db", Endpoint{IP: "10.1.0.7", Hostname: "db-0"}, Endpoint{IP: "fd00::8"}, Endpoint{IP: "10.1.0.9", NotReady: true}); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateServiceEntry("default", "fixed", []string{"fixed.example.com"}, []string{"192.0.2.1"}, "STATIC"); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteServiceEntry("default", "ext"); err != nil {
			t.Fatal(err)
		}
		ads.waitFor(t, 30*time.Second, func(nt nameTable) bool {
			_, ext := nt["api.example.com"]
			// An IPv4-only proxy gets only the IPv4 cluster IP; endpoints are not filtered.
			return slices.Equal(nt["dual.ns2.svc.cluster.local"].ips, []string{"10.96.100.30"}) &&
				// Endpoints come from one EndpointSlice per family, in no set order.
				slices.Equal(slices.Sorted(slices.Values(nt["db.default.svc.cluster.local"].ips)), []string{"10.1.0.7", "fd00::8"}) &&
				slices.Equal(nt["db-0.db.default.svc.cluster.local"].ips, []string{"10.1.0.7"}) &&
				slices.Equal(nt["fixed.example.com"].ips, []string{"192.0.2.1"}) && !ext
		})
		// A proxy with addresses of both families gets both (given ISTIO_DUAL_STACK=true).
		dual := dialADSMeta(t, st.IstiodGRPC, map[string]any{"INSTANCE_IPS": "10.0.0.1,fd00::1"}, grpc.WithTransportCredentials(insecure.NewCredentials()))
		dual.waitFor(t, 30*time.Second, func(nt nameTable) bool {
			return slices.Equal(nt["dual.ns2.svc.cluster.local"].ips, []string{"10.96.100.30", "fd00:10:96::30"})
		})
	})

	t.Run("secure", func(t *testing.T) {
		rootPath, err := st.IstiodRootCert()
		if err != nil {
			t.Fatal(err)
		}
		pem, err := os.ReadFile(rootPath)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("no certificate in %s", rootPath)
		}
		creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: IstiodServerName})

		// Without a token: TLS verifies, then istiod refuses the stream.
		noToken := dialADS(t, st.IstiodSecureGRPC, grpc.WithTransportCredentials(creds))
		if _, err := noToken.recv(10 * time.Second); err == nil {
			t.Fatal("istiod served NDS on the secure port without credentials")
		} else {
			t.Logf("secure port without a token: %v", err)
		}

		token, err := st.IstioToken("default", "default")
		if err != nil {
			t.Fatal(err)
		}
		ads := dialADS(t, st.IstiodSecureGRPC, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(bearer(token)))
		ads.waitFor(t, 30*time.Second, func(nt nameTable) bool { return len(nt["web.default.svc.cluster.local"].ips) > 0 })

		// A token for another namespace than the node claims is refused.
		other, err := st.IstioToken("other", "default")
		if err != nil {
			t.Fatal(err)
		}
		wrong := dialADS(t, st.IstiodSecureGRPC, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(bearer(other)))
		if _, err := wrong.recv(10 * time.Second); err == nil {
			t.Fatal("istiod accepted a token of namespace other for a node in default")
		} else {
			t.Logf("token of the wrong namespace: %v", err)
		}
	})

	t.Run("restart", func(t *testing.T) {
		ads := dialADS(t, st.IstiodGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		ads.waitFor(t, 30*time.Second, func(nt nameTable) bool { return len(nt) > 0 })

		begin := time.Now()
		st.StopIstiod()
		if st.IstiodRunning() {
			t.Fatal("istiod still running after StopIstiod")
		}
		// The open stream must end (not hang) when istiod goes away.
		for {
			if _, err := ads.recv(10 * time.Second); errors.Is(err, errNoPush) {
				t.Fatalf("stream still open after istiod was killed: %v", err)
			} else if err != nil {
				t.Logf("stream ended %v after the kill: %v", time.Since(begin).Round(time.Millisecond), err)
				break
			}
		}
		// A change made while istiod is down must be there after it comes back.
		if _, err := st.CreateService("default", "while-down", "10.96.100.20"); err != nil {
			t.Fatal(err)
		}
		begin = time.Now()
		if err := st.StartIstiod(); err != nil {
			t.Fatal(err)
		}
		t.Logf("istiod ready again in %v", time.Since(begin).Round(time.Millisecond))
		again := dialADS(t, st.IstiodGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		again.waitFor(t, 30*time.Second, func(nt nameTable) bool {
			return slices.Contains(nt["while-down.default.svc.cluster.local"].ips, "10.96.100.20") &&
				len(nt["web.default.svc.cluster.local"].ips) > 0
		})
		t.Logf("first NDS push after restart: %v after StartIstiod began", time.Since(begin).Round(time.Millisecond))

		// The polite stop ends the stream too.
		begin = time.Now()
		st.TerminateIstiod()
		t.Logf("TerminateIstiod took %v", time.Since(begin).Round(time.Millisecond))
		for {
			if _, err := again.recv(10 * time.Second); errors.Is(err, errNoPush) {
				t.Fatalf("stream still open after istiod was terminated: %v", err)
			} else if err != nil {
				t.Logf("stream after SIGTERM: %v", err)
				break
			}
		}
		if err := st.StartIstiod(); err != nil {
			t.Fatal(err)
		}
	})
}

// adsStream is a raw ADS stream subscribed to NDS, acknowledging every response.
type adsStream struct {
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discovery.DiscoveryResponse
	errs   chan error
}

func dialADS(t *testing.T, addr string, opts ...grpc.DialOption) *adsStream {
	t.Helper()
	return dialADSMeta(t, addr, nil, opts...)
}

// dialADSMeta is dialADS with extra node metadata.
func dialADSMeta(t *testing.T, addr string, extra map[string]any, opts ...grpc.DialOption) *adsStream {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{
		"DNS_CAPTURE":       "true", // without it ServiceEntries without addresses are left out
		"DNS_AUTO_ALLOCATE": "true", // legacy: istiod auto-allocates anyway (PILOT_ENABLE_IP_AUTOALLOCATE)
		"CLUSTER_ID":        "Kubernetes",
		"NAMESPACE":         "default", // must match the token's namespace on the secure port
		"ISTIO_VERSION":     "1.31.0",  // only labels metrics; istiod accepts any value
	}
	maps.Copy(m, extra)
	meta, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	req := &discovery.DiscoveryRequest{
		Node:    &core.Node{Id: "sidecar~10.0.0.1~test.default~default.svc.cluster.local", Metadata: meta},
		TypeUrl: nameTableType,
	}
	a := &adsStream{stream: stream, resps: make(chan *discovery.DiscoveryResponse, 16), errs: make(chan error, 1)}
	go func() {
		// A Send error is io.EOF when the server has already ended the stream (a refused token, say):
		// the reason comes from Recv, below.
		_ = stream.Send(req)
		for {
			resp, err := stream.Recv()
			if err != nil {
				a.errs <- err
				return
			}
			ack := &discovery.DiscoveryRequest{TypeUrl: nameTableType, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
			if err := stream.Send(ack); err != nil {
				a.errs <- err
				return
			}
			a.resps <- resp
		}
	}()
	return a
}

var errNoPush = errors.New("no push")

// recv returns the next NameTable pushed, or the stream's error.
func (a *adsStream) recv(timeout time.Duration) (nameTable, error) {
	select {
	case resp := <-a.resps:
		if resp.TypeUrl != nameTableType || len(resp.Resources) != 1 {
			return nil, fmt.Errorf("unexpected response: type %s, %d resources", resp.TypeUrl, len(resp.Resources))
		}
		return decodeNameTable(resp.Resources[0].Value)
	case err := <-a.errs:
		a.errs <- err // stays failed
		return nil, err
	case <-time.After(timeout):
		return nil, fmt.Errorf("%w within %v", errNoPush, timeout)
	}
}

// waitFor reads pushes until one satisfies ok.
func (a *adsStream) waitFor(t *testing.T, timeout time.Duration, ok func(nameTable) bool) nameTable {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last nameTable
	for {
		nt, err := a.recv(time.Until(deadline))
		if err != nil {
			t.Fatalf("%v; last table: %v", err, last)
		}
		if ok(nt) {
			return nt
		}
		last = nt
	}
}

// bearer sends a JWT as gRPC metadata "authorization: Bearer ...", as istio-agent does.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// nameInfo and nameTable mirror istio.networking.nds.v1.NameTable, decoded with protowire so this test
// needs no Istio import.
type nameInfo struct {
	ips                            []string
	registry, shortname, namespace string
	altHosts                       []string
}

type nameTable map[string]nameInfo

func decodeNameTable(b []byte) (nameTable, error) {
	nt := nameTable{}
	err := eachField(b, func(num protowire.Number, v []byte) error {
		if num != 1 { // map<string, NameInfo> table = 1
			return nil
		}
		var key string
		var info nameInfo
		err := eachField(v, func(num protowire.Number, v []byte) error {
			switch num {
			case 1:
				key = string(v)
			case 2:
				return eachField(v, func(num protowire.Number, v []byte) error {
					switch num {
					case 1:
						info.ips = append(info.ips, string(v))
					case 2:
						info.registry = string(v)
					case 3:
						info.shortname = string(v)
					case 4:
						info.namespace = string(v)
					case 5:
						info.altHosts = append(info.altHosts, string(v))
					}
					return nil
				})
			}
			return nil
		})
		nt[key] = info
		return err
	})
	return nt, err
}

// eachField calls fn with every length-delimited field of a message; other wire types are skipped.
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := fn(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
