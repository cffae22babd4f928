package nds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshdns/meshdns/plugin/meshdns/source/nds/ndstest"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
)

// testPKI is a CA with a server certificate for istiod.test and a client certificate, on disk.
type testPKI struct {
	caFile, certFile, keyFile string
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, dns ...string) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, DNSNames: dns,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	p := &testPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem")}
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	clientDER, clientKey := issue(2, x509.ExtKeyUsageClientAuth)
	write(p.certFile, "CERTIFICATE", clientDER)
	keyDER, _ := x509.MarshalECPrivateKey(clientKey)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	serverDER, serverKey := issue(3, x509.ExtKeyUsageServerAuth, "istiod.test")
	p.server = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	srv := ndstest.New(t, credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}))
	src := newSource(t, Config{Address: srv.Addr, CAFile: pki.caFile, ServerName: "istiod.test", CertFile: pki.certFile, KeyFile: pki.keyFile})
	k := newSink()
	runSource(t, src, k)
	srv.Request()
	srv.Pushes <- &discovery.DiscoveryResponse{TypeUrl: TypeURL, VersionInfo: "1", Nonce: "1", Resources: []*anypb.Any{nameTable(reviews)}}
	if got := k.next(t); len(got) != 1 {
		t.Errorf("over mutual TLS: %v", got)
	}
}

func TestTLSRefusesTheWrongServerName(t *testing.T) {
	pki := newTestPKI(t)
	srv := ndstest.New(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pki.server}}))
	src := newSource(t, Config{Address: srv.Addr, CAFile: pki.caFile, ServerName: "not-istiod.test"})
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
