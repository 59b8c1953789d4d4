package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
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

// lastSessionCache offers the last session it was given for any server
// name: a client that tries a ticket on another host than it came from.
type lastSessionCache struct {
	mu   sync.Mutex
	last *tls.ClientSessionState
}

func (c *lastSessionCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.last != nil
}

func (c *lastSessionCache) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs != nil {
		c.last = cs
	}
}

// TestRunnerTLSResumes: a runner's second connection resumes the session
// of its first (session ticket, TLS 1.3 and 1.2), and the request on it
// is served and recorded as any other; a ticket is not accepted on a
// tunnel to another host, and a ClientHello without SNI is not resumed.
func TestRunnerTLSResumes(t *testing.T) {
	e := newEnv(t, okJSON, func(o *Options) { o.Intercept = append(o.Intercept, "api.anthropic.com") })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS 1.3", tls.VersionTLS13}, {"TLS 1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{
				Proxy:             http.ProxyURL(e.proxyURL),
				DisableKeepAlives: true, // a new connection for each request
				TLSClientConfig:   &tls.Config{RootCAs: pool, MaxVersion: v.max, ClientSessionCache: tls.NewLRUClientSessionCache(8)},
			}}
			var resumed []bool
			for range 3 {
				req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Set("Authorization", "Bearer "+testRunnerToken)
				resp, body := do(t, c, req)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				resumed = append(resumed, resp.TLS.DidResume)
			}
			if resumed[0] || !resumed[1] || !resumed[2] {
				t.Fatalf("DidResume over three connections = %v, want [false true true]", resumed)
			}
		})
	}
	handshake := func(t *testing.T, host string, cfg *tls.Config) tls.ConnectionState {
		t.Helper()
		tc := tls.Client(connectTunnel(t, e, host), cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake with %s: %v", host, err)
		}
		// A TLS 1.3 ticket arrives after the handshake: read until the
		// server's first message has been processed.
		tc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		tc.Read(make([]byte, 1))
		return tc.ConnectionState()
	}
	t.Run("ticket for another host", func(t *testing.T) {
		cache := &lastSessionCache{}
		// The client trusts anything: the server must refuse to resume.
		cfg := &tls.Config{ServerName: "api.openai.com", InsecureSkipVerify: true, ClientSessionCache: cache}
		handshake(t, "api.openai.com", cfg)
		if cache.last == nil {
			t.Fatal("no session ticket was issued")
		}
		if !handshake(t, "api.openai.com", cfg).DidResume {
			t.Fatal("the ticket did not resume on its own host")
		}
		cfg = cfg.Clone()
		cfg.ServerName = "api.anthropic.com"
		if handshake(t, "api.anthropic.com", cfg).DidResume {
			t.Fatal("a ticket issued for api.openai.com resumed on a tunnel to api.anthropic.com")
		}
	})
	t.Run("no SNI", func(t *testing.T) {
		cache := &lastSessionCache{}
		cfg := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache}
		st := handshake(t, "api.openai.com", cfg)
		if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].VerifyHostname("api.openai.com") != nil {
			t.Fatal("without SNI, the runner did not get the tunnel host's leaf")
		}
		if cache.last != nil {
			if handshake(t, "api.openai.com", cfg).DidResume {
				t.Fatal("a session without SNI resumed")
			}
		}
	})
}
