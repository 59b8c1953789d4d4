package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/x509util"
)

// leafBackdate is how far in the past a leaf's validity starts, so that
// runners whose clocks are a little behind accept it.
const leafBackdate = 5 * time.Minute

// GetCertificate returns a leaf for the client's SNI name; it fits
// [tls.Config.GetCertificate]. Clients that send no SNI, or a name that is
// not intercepted, get an error and the handshake fails.
func (a *Authority) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello == nil || hello.ServerName == "" {
		return nil, errors.New("ca: the client sent no server name (SNI); cannot choose a certificate")
	}
	return a.Leaf(hello.ServerName)
}

// Leaf returns a certificate for name, from the cache while it is younger
// than two thirds of its lifetime, otherwise freshly minted. Concurrent
// calls for the same name mint once. The chain holds the leaf, then the
// issuing CA if that is not a root; Leaf is set.
func (a *Authority) Leaf(name string) (*tls.Certificate, error) {
	name = NormalizeName(name)
	iss := a.state.Load()
	if !iss.allows(name) {
		return nil, fmt.Errorf("ca: refusing to mint a certificate for %.100q: %w (intercepted: %s)", name, ErrNotIntercepted, iss.names)
	}
	if e, ok := a.cache.get(name); ok && e.gen == iss.gen && a.now().Before(e.refreshAt) {
		a.hits.Add(1)
		return e.cert, nil
	}
	key := strconv.FormatUint(iss.gen, 10) + "/" + name
	v, err, _ := a.group.Do(key, func() (any, error) {
		now := a.now()
		// Another caller may have minted it while this one waited.
		if e, ok := a.cache.get(name); ok && e.gen == iss.gen && now.Before(e.refreshAt) {
			return e.cert, nil
		}
		cert, refreshAt, err := iss.mint(name, now, a.validity)
		if err != nil {
			return nil, err
		}
		a.minted.Add(1)
		a.cache.add(name, leafEntry{cert: cert, refreshAt: refreshAt, gen: iss.gen})
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// mint issues a leaf for name with a fresh ECDSA P-256 key and returns it
// with the time at which it should be replaced.
func (iss *issuer) mint(name string, now time.Time, validity time.Duration) (*tls.Certificate, time.Time, error) {
	notBefore := now.Add(-leafBackdate)
	if notBefore.Before(iss.cert.NotBefore) {
		notBefore = iss.cert.NotBefore
	}
	notAfter := now.Add(validity)
	if notAfter.After(iss.cert.NotAfter) {
		notAfter = iss.cert.NotAfter
	}
	if !now.Before(notAfter) {
		return nil, time.Time{}, fmt.Errorf("ca: cannot mint for %q: the CA expired on %s", name, iss.cert.NotAfter.Format(time.RFC3339))
	}
	key, err := keyutil.GenerateSigner("EC", "P-256", 0)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("ca: generate leaf key: %w", err)
	}
	// Like the CA/Browser Forum's current profile for TLS servers, the leaf
	// has an empty subject: its name is in the SAN, marked critical. It
	// keeps the subject key id RFC 5280 asks for.
	tpl := (&x509util.Certificate{
		DNSNames:         []string{name},
		KeyUsage:         x509util.KeyUsage(x509.KeyUsageDigitalSignature),
		ExtKeyUsage:      x509util.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraints: &x509util.BasicConstraints{IsCA: false},
		NotBefore:        notBefore.UTC().Truncate(time.Second),
		NotAfter:         notAfter.UTC().Truncate(time.Second),
		PublicKey:        key.Public(),
	}).GetCertificate()
	// CreateCertificate adds a random 128-bit serial and the subject key
	// id; crypto/x509 adds the authority key id from the CA's.
	leaf, err := x509util.CreateCertificate(tpl, iss.cert, key.Public(), iss.signer)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("ca: mint for %q: %w", name, err)
	}
	refreshAt := now.Add(notAfter.Sub(now) * 2 / 3)
	chain := make([][]byte, 0, 1+len(iss.chain))
	chain = append(append(chain, leaf.Raw), iss.chain...)
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, refreshAt, nil
}
