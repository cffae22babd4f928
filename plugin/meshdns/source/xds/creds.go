package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// maxPushBytes bounds the size of one push the client accepts: far above any real mesh, and still
// a bound on what a broken control plane can make it allocate.
const maxPushBytes = 256 << 20

// Dial is how to reach a control plane: its address, and the TLS and token settings of the stream.
type Dial struct {
	Address    string
	CAFile     string // verify the server with this CA; empty: plaintext
	ServerName string
	CertFile   string // client certificate, for mutual TLS
	KeyFile    string
	TokenFile  string // bearer JWT sent on each stream, re-read as it rotates
}

// Connect makes a connection to the control plane for clients to share (Config.Conn). Like the
// connection each client makes otherwise, it connects when a stream first needs it.
func (cfg *Dial) Connect() (*grpc.ClientConn, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Address, err)
	}
	return conn, nil
}

// options turns the TLS and token settings into gRPC options. Files are read when a connection
// or stream needs them, not once, so rotated certificates and tokens are picked up.
func (cfg *Dial) options() ([]grpc.DialOption, error) {
	opts := []grpc.DialOption{
		// A large mesh's table is several megabytes (100k names: about 10 MB), past gRPC's default
		// 4 MB limit; istio-agent lifts it too.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxPushBytes)),
		// Pings on a quiet stream, as istio-agent sends them (istiod allows one every 15 s): a
		// control plane gone silently (a partition, a dead node) is found in 40 s, not when TCP
		// gives up minutes later.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if cfg.CAFile == "" {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		tc := &tls.Config{
			ServerName: cfg.ServerName,
			MinVersion: tls.VersionTLS12,
		}
		pool, err := loadCA(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
		if cfg.CertFile != "" {
			certFile, keyFile := cfg.CertFile, cfg.KeyFile
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				c, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return nil, fmt.Errorf("client_cert: %w", err)
				}
				return &c, nil
			}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	if cfg.TokenFile != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenFile{path: cfg.TokenFile, secure: cfg.CAFile != ""}))
	}
	return opts, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// tokenFile sends the JWT in a file as a bearer token, read afresh for every stream.
type tokenFile struct {
	path   string
	secure bool
}

func (t tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(t.path)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("token: %s is empty", t.path)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity is false on plaintext connections so a token can still be sent to a
// control plane on a trusted network (istiod's 15010 ignores it).
func (t tokenFile) RequireTransportSecurity() bool { return t.secure }
