package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// UpstreamOptions configure the transport to the real API.
type UpstreamOptions struct {
	// CAFile adds PEM certificates to the system roots (which already
	// honour SSL_CERT_FILE). Upstream TLS is always verified.
	CAFile string
	// Addr, when set, is dialled for every upstream host (tests, private
	// endpoints); TLS still verifies the host name the request names.
	Addr string
}

// NewTransport returns the shared, keep-alive transport used for every
// upstream request, and the dialer and TLS configuration it uses. It never
// reads proxy settings from the environment: a proxy that inherited its own
// address in HTTPS_PROXY would loop.
func NewTransport(o UpstreamOptions) (*http.Transport, func(ctx context.Context, network, addr string) (net.Conn, error), *tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("proxy: upstream CA: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("proxy: upstream CA %s: no PEM certificate found", o.CAFile)
		}
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := d.DialContext
	if o.Addr != "" {
		dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, o.Addr)
		}
	}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Answers of a long completion may take minutes to start.
		ResponseHeaderTimeout: 10 * time.Minute,
	}
	return tr, dial, tlsConf, nil
}
