package nds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// dialOptions turns the TLS and token settings into gRPC options. Files are read when a connection
// or stream needs them, not once, so rotated certificates and tokens are picked up.
func (cfg *Config) dialOptions() ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
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
