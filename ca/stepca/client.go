package stepca

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/smallstep/certificates/api"
	stepca "github.com/smallstep/certificates/ca"
	"github.com/smallstep/certificates/errs"
	"go.step.sm/crypto/jose"
)

// client talks to one step-ca: it signs one-time tokens with a JWK
// provisioner's key, has certificate requests signed and renews
// certificates.
type client struct {
	url      string
	roots    *x509.CertPool
	tr       *http.Transport
	ca       *stepca.Client
	timeout  time.Duration
	provName string
	password []byte // nil: no provisioner key, tokens must come from elsewhere

	mu   sync.Mutex
	prov *stepca.Provisioner // loaded on first use
}

// newClient prepares a client; it does not contact step-ca. Its transport
// trusts only roots and never goes through HTTPS_PROXY.
func newClient(url string, roots *x509.CertPool, timeout time.Duration, provName string, password []byte) (*client, error) {
	tr := &http.Transport{
		Proxy:                 nil, // sessctl is the proxy; never loop through one
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	c, err := stepca.NewClient(url, stepca.WithTransport(tr), stepca.WithTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("stepca: CA URL %.200q: %w", url, err)
	}
	return &client{url: url, roots: roots, tr: tr, ca: c, timeout: timeout, provName: provName, password: password}, nil
}

// canSign reports whether the client holds a provisioner password and can
// therefore make its own tokens.
func (c *client) canSign() bool { return c.password != nil }

// provisioner returns the JWK provisioner, fetching and decrypting its key
// on first use.
func (c *client) provisioner() (*stepca.Provisioner, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prov != nil {
		return c.prov, nil
	}
	if c.password == nil {
		return nil, errors.New("stepca: no provisioner password (use --password-file)")
	}
	p, err := stepca.NewProvisioner(c.provName, "", c.url, c.password,
		stepca.WithTransport(c.tr), stepca.WithTimeout(c.timeout))
	if err != nil {
		return nil, c.wrap(fmt.Sprintf("load provisioner %q", c.provName), err)
	}
	c.prov = p
	return p, nil
}

// forgetProvisioner drops the cached provisioner key, so that the next
// token fetches it again.
func (c *client) forgetProvisioner() {
	c.mu.Lock()
	c.prov = nil
	c.mu.Unlock()
}

// isUnauthorized reports whether step-ca refused a request as
// unauthorized (HTTP 401), as it does for a token it cannot verify.
func isUnauthorized(err error) bool {
	var apiErr *errs.Error
	return errors.As(err, &apiErr) && apiErr.StatusCode() == http.StatusUnauthorized
}

// token makes a one-time token for subject and sans with the provisioner.
func (c *client) token(subject string, sans ...string) (string, error) {
	p, err := c.provisioner()
	if err != nil {
		return "", err
	}
	tok, err := p.Token(subject, sans...)
	if err != nil {
		return "", fmt.Errorf("stepca: sign a token for %q: %w", subject, err)
	}
	return tok, nil
}

// sign has step-ca sign a fresh key for the token's subject and SANs and
// returns the certificate chain (leaf first, root excluded) with its key.
func (c *client) sign(ctx context.Context, tok string, lifetime time.Duration) (*tls.Certificate, error) {
	req, key, err := stepca.CreateSignRequest(tok)
	if err != nil {
		return nil, errors.New("stepca: the one-time token is not a step-ca token (make one with: step ca token HOST)")
	}
	if lifetime > 0 {
		req.NotAfter.SetDuration(lifetime)
	}
	resp, err := c.ca.SignWithContext(ctx, req)
	if err != nil {
		return nil, c.wrap("sign", err)
	}
	return chainOf(resp, key)
}

// renew has step-ca renew cert, authenticating with it over mutual TLS;
// the key stays the same.
func (c *client) renew(ctx context.Context, cert *tls.Certificate) (*tls.Certificate, error) {
	tr := c.tr.Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
	defer tr.CloseIdleConnections()
	resp, err := c.ca.RenewWithContext(ctx, tr)
	if err != nil {
		return nil, c.wrap("renew", err)
	}
	return chainOf(resp, cert.PrivateKey)
}

// close drops idle connections to step-ca.
func (c *client) close() { c.tr.CloseIdleConnections() }

// chainOf assembles a signing response and its key into a certificate
// chain, leaf first.
func chainOf(resp *api.SignResponse, key crypto.PrivateKey) (*tls.Certificate, error) {
	var chain [][]byte
	for _, c := range resp.CertChainPEM {
		if c.Certificate != nil {
			chain = append(chain, c.Raw)
		}
	}
	if len(chain) == 0 && resp.ServerPEM.Certificate != nil {
		chain = append(chain, resp.ServerPEM.Raw)
		if resp.CaPEM.Certificate != nil {
			chain = append(chain, resp.CaPEM.Raw)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("stepca: step-ca answered without a certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("stepca: certificate from step-ca: %w", err)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// wrap turns an error from step-ca's client into one that says what
// failed: step-ca unreachable (wrapping [ErrUnavailable]), its certificate
// not trusted, or the request refused.
func (c *client) wrap(op string, err error) error {
	var apiErr *errs.Error
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &certErr):
		return fmt.Errorf("stepca: %s: the TLS certificate of %s does not verify with the given root (wrong --root?): %w", op, c.url, err)
	case unreachable(err):
		return fmt.Errorf("stepca: %s: %w at %s: %w", op, ErrUnavailable, c.url, err)
	case errors.As(err, &apiErr):
		return fmt.Errorf("stepca: %s: step-ca refused the request (HTTP %d): %w", op, apiErr.StatusCode(), err)
	default:
		return fmt.Errorf("stepca: %s: %w", op, err)
	}
}

// unreachable reports whether err means that step-ca could not be
// reached or did not answer in time.
func unreachable(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &opErr), errors.As(err, &dnsErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	}
	return false
}

// tokenClaims are the claims of a one-time token that decide which
// certificate it can obtain.
type tokenClaims struct {
	Subject string            `json:"sub"`
	SANs    []string          `json:"sans"`
	Expiry  *jose.NumericDate `json:"exp"`
}

// parseToken reads a one-time token's claims without verifying it (step-ca
// does that). Errors never quote the token.
func parseToken(tok string) (*tokenClaims, error) {
	jwt, err := jose.ParseSigned(tok)
	if err != nil {
		return nil, errors.New("stepca: the one-time token is not a JWT (make one with: step ca token HOST)")
	}
	var c tokenClaims
	if err := jwt.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, errors.New("stepca: the one-time token's claims cannot be read")
	}
	if len(c.SANs) == 0 && c.Subject != "" {
		c.SANs = []string{c.Subject}
	}
	if len(c.SANs) == 0 {
		return nil, errors.New("stepca: the one-time token names no host")
	}
	return &c, nil
}
