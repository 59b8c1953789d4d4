package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// connectTunnel opens a CONNECT tunnel to host:443 through the proxy.
func connectTunnel(t *testing.T, e *env, host string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.proxyURL.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("CONNECT " + host + ":443 HTTP/1.1\r\nHost: " + host + ":443\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %s", host, resp.Status)
	}
	if br.Buffered() != 0 {
		t.Fatal("bytes after the CONNECT answer")
	}
	return c
}

// remoteAlert returns the TLS alert the peer sent, as crypto/tls words it
// ("tls: handshake failure"), or "" if err is not a received alert.
func remoteAlert(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return op.Err.Error()
	}
	return ""
}

// TestRunnerTLS: on the intercepting side, TLS 1.2 offers AEAD suites only,
// and a ClientHello for another name than the tunnel's host gets an
// unrecognized_name alert.
func TestRunnerTLS(t *testing.T) {
	e := newEnv(t, okJSON)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	cbc := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	}
	tests := []struct {
		name      string
		cfg       *tls.Config
		wantAlert string // "" = handshake succeeds
	}{
		{"TLS 1.2 AEAD", &tls.Config{ServerName: "api.openai.com", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, ""},
		{"TLS 1.3", &tls.Config{ServerName: "api.openai.com", MinVersion: tls.VersionTLS13}, ""},
		{"TLS 1.2 CBC only", &tls.Config{ServerName: "api.openai.com", MaxVersion: tls.VersionTLS12, CipherSuites: cbc}, "tls: handshake failure"},
		{"TLS 1.1", &tls.Config{ServerName: "api.openai.com", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, "tls: protocol version not supported"},
		{"wrong SNI", &tls.Config{ServerName: "evil.example"}, "tls: unrecognized name"},
		{"wrong SNI, TLS 1.2", &tls.Config{ServerName: "evil.example", MaxVersion: tls.VersionTLS12}, "tls: unrecognized name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg.Clone()
			cfg.RootCAs = pool
			if tt.wantAlert != "" {
				cfg.InsecureSkipVerify = true // the server must refuse, not the client
			}
			tc := tls.Client(connectTunnel(t, e, "api.openai.com"), cfg)
			err := tc.Handshake()
			if tt.wantAlert == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				if v := tc.ConnectionState().Version; v == tls.VersionTLS12 && !isAEAD(tc.ConnectionState().CipherSuite) {
					t.Fatalf("negotiated %s", tls.CipherSuiteName(tc.ConnectionState().CipherSuite))
				}
				return
			}
			if got := remoteAlert(err); got != tt.wantAlert {
				t.Fatalf("handshake err = %v; alert %q, want %q", err, got, tt.wantAlert)
			}
		})
	}
}

func isAEAD(id uint16) bool {
	for _, s := range runnerCipherSuites {
		if s == id {
			return true
		}
	}
	return false
}
