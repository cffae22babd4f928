package nds

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestMutualTLS(t *testing.T) {
	pki := ndstest.NewPKI(t, "istiod.test")
	srv := ndstest.New(t, credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}))
	src := newSource(t, Config{Address: srv.Addr, CAFile: pki.CAFile, ServerName: "istiod.test", CertFile: pki.CertFile, KeyFile: pki.KeyFile})
	k := newSink()
	runSource(t, src, k)
	srv.Request()
	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "1", Nonce: "1", Resources: []*anypb.Any{nameTable(reviews)}}
	if got := k.next(t); len(got) != 1 {
		t.Errorf("over mutual TLS: %v", got)
	}
}

func TestTLSRefusesTheWrongServerName(t *testing.T) {
	pki := ndstest.NewPKI(t, "istiod.test")
	srv := ndstest.New(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pki.Server}}))
	src := newSource(t, Config{Address: srv.Addr, CAFile: pki.CAFile, ServerName: "not-istiod.test"})
	runSource(t, src, newSink())
	select {
	case r := <-srv.Requests:
		t.Fatalf("a server with the wrong name got a request: %v", r)
	case <-time.After(500 * time.Millisecond):
	}
	if srv.OpenStreams() != 0 {
		t.Error("a stream opened to a server with the wrong name")
	}
}
