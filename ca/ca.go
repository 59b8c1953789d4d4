// Package ca is sessctl's internal certificate authority: it creates and
// rotates a name-constrained CA on disk, and mints short-lived leaf
// certificates for the intercepted hosts on demand.
//
// A CA directory holds:
//
//	ca.crt, ca.key            the CA that mints leaves (key mode 0600)
//	next/ca.crt, next/ca.key  its successor after Rotate, until Promote
//	old/ca.crt, old/ca.key    its predecessor after Promote
//	old/retire-after          until when (RFC 3339) old/ca.crt stays trusted
//
// The CA is a self-signed ECDSA P-256 root with path length 0 whose
// critical X.509 name constraints permit only the intercepted DNS names and
// exclude every IP address, so that a runner trusting it trusts nothing
// else. Runners trust the bundle [Bundle] or [Authority.CertPEM] returns:
// the current CA, the next one while a rotation is pending, and the old one
// until its retirement date.
//
// An [Authority] mints leaves for TLS servers through
// [Authority.GetCertificate]: one leaf per SNI name, cached in a bounded
// LRU, re-minted at two thirds of its lifetime, and minted once however
// many handshakes ask for the same new name at the same time.
package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults for [LoadOptions].
const (
	DefaultLeafValidity = 24 * time.Hour // lifetime of a minted leaf
	DefaultCacheSize    = 1024           // leaves kept in the cache
)

// expiryWarning is how long before its expiry Load warns about a CA.
const expiryWarning = 30 * 24 * time.Hour

// ErrNotIntercepted is returned (wrapped) for a leaf request for a name the
// Authority does not intercept.
var ErrNotIntercepted = errors.New("not an intercepted host")

// LoadOptions configures [Load].
type LoadOptions struct {
	// Hosts are the names leaves may be minted for; each must lie within
	// the CA's name constraints. Empty means the CA's permitted DNS names.
	Hosts []string
	// LeafValidity is the lifetime of a minted leaf; default
	// [DefaultLeafValidity]. A leaf never outlives its CA.
	LeafValidity time.Duration
	// CacheSize bounds the number of cached leaves; default
	// [DefaultCacheSize].
	CacheSize int
	// Logger receives rotation and expiry notices; default slog.Default().
	Logger *slog.Logger
}

// Stats are counters for metrics.
type Stats struct {
	Minted uint64 // leaves minted since Load
	Hits   uint64 // leaf requests served from the cache
	Cached int    // leaves in the cache now
}

// Authority mints leaf certificates from the CA in one directory. It is
// safe for concurrent use.
type Authority struct {
	dir      string
	hosts    []string // as given to Load, normalized; may be empty
	wild     []string // domains of the wildcard hosts given to Load
	validity time.Duration
	log      *slog.Logger
	now      func() time.Time

	state atomic.Pointer[issuer]
	cache *lru
	group singleflight.Group

	minted, hits atomic.Uint64
}

// issuer is what an Authority mints with, replaced as a whole on Reload.
type issuer struct {
	cert   *x509.Certificate
	signer crypto.Signer
	chain  [][]byte // DER certificates sent after the leaf
	bundle []byte   // PEM certificates runners should trust
	hosts  map[string]bool
	wild   []string // a leaf may be minted for any one-label name below these
	names  string   // hosts for error messages
	gen    uint64   // changes whenever cert changes
}

// Load reads the CA in dir and returns an Authority that mints leaves with
// it. It refuses a key file that group or others can access, a missing or
// corrupt certificate or key, a key that is not the certificate's, a CA
// outside its validity, and hosts outside the CA's name constraints.
func Load(dir string, opts LoadOptions) (*Authority, error) {
	if opts.LeafValidity < 0 {
		return nil, fmt.Errorf("ca: load %s: negative leaf validity %v", dir, opts.LeafValidity)
	}
	if opts.LeafValidity == 0 {
		opts.LeafValidity = DefaultLeafValidity
	}
	if opts.CacheSize < 0 {
		return nil, fmt.Errorf("ca: load %s: negative cache size %d", dir, opts.CacheSize)
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	hosts, wild, err := SplitWildcards(opts.Hosts)
	if err != nil {
		return nil, fmt.Errorf("ca: load %s: %w", dir, err)
	}
	a := &Authority{
		dir:      dir,
		hosts:    hosts,
		wild:     wild,
		validity: opts.LeafValidity,
		log:      opts.Logger,
		now:      time.Now,
		cache:    newLRU(opts.CacheSize),
	}
	iss, err := a.read(1)
	if err != nil {
		return nil, err
	}
	a.state.Store(iss)
	return a, nil
}

// Reload re-reads the CA directory. After a promotion it switches minting
// to the new CA and drops every cached leaf, so that the next handshake for
// each name gets a leaf from the new CA; after a rotation it adds the next
// CA to [Authority.CertPEM]. On error the Authority keeps its current CA.
func (a *Authority) Reload() error {
	old := a.state.Load()
	iss, err := a.read(old.gen)
	if err != nil {
		return err
	}
	changed := !bytes.Equal(iss.cert.Raw, old.cert.Raw)
	if changed {
		iss.gen = old.gen + 1
	}
	a.state.Store(iss)
	if changed {
		a.cache.purge()
		a.log.Info("ca: issuing CA changed; cached leaves will be re-minted",
			"dir", a.dir, "subject", iss.cert.Subject.CommonName, "not_after", iss.cert.NotAfter)
	}
	return nil
}

// read loads and checks the directory's CA, rotation bundle and hosts.
func (a *Authority) read(gen uint64) (*issuer, error) {
	now := a.now()
	p, err := readPair(a.dir)
	if err != nil {
		return nil, err
	}
	crtPath := filepath.Join(a.dir, certFile)
	if now.Before(p.cert.NotBefore) {
		return nil, fmt.Errorf("ca: %s is not valid before %s (check the clock)", crtPath, p.cert.NotBefore.Format(time.RFC3339))
	}
	if now.After(p.cert.NotAfter) {
		return nil, fmt.Errorf("ca: %s expired on %s; replace it (sessctl ca rotate, then ca promote)", crtPath, p.cert.NotAfter.Format(time.RFC3339))
	}
	if left := p.cert.NotAfter.Sub(now); left < expiryWarning {
		a.log.Warn("ca: CA certificate expires soon; rotate it", "path", crtPath, "not_after", p.cert.NotAfter)
	}
	if len(p.cert.SubjectKeyId) == 0 {
		a.log.Warn("ca: CA certificate has no subject key identifier; strict clients will reject its leaves", "path", crtPath)
	}
	if len(p.cert.PermittedDNSDomains) == 0 {
		a.log.Warn("ca: CA certificate has no DNS name constraints; runners trusting it trust it for any site", "path", crtPath)
	}
	hosts := a.hosts
	if len(hosts) == 0 && len(a.wild) == 0 {
		for _, d := range p.cert.PermittedDNSDomains {
			if !strings.HasPrefix(d, ".") {
				hosts = append(hosts, NormalizeName(d))
			}
		}
		if len(hosts) == 0 {
			return nil, fmt.Errorf("ca: no hosts to intercept: none given and %s permits no exact DNS name", crtPath)
		}
	}
	names := slices.Clone(hosts)
	for _, d := range a.wild {
		names = append(names, "*."+d)
	}
	iss := &issuer{
		cert:   p.cert,
		signer: p.signer,
		hosts:  make(map[string]bool, len(hosts)),
		wild:   a.wild,
		names:  strings.Join(names, ", "),
		gen:    gen,
	}
	for _, d := range a.wild {
		if !Permits(p.cert, d) {
			return nil, fmt.Errorf("ca: wildcard host *.%s is outside the name constraints of %s (%s); create a CA for it with sessctl ca init --force or ca rotate --host",
				d, crtPath, strings.Join(p.cert.PermittedDNSDomains, ", "))
		}
	}
	for _, h := range hosts {
		if !Permits(p.cert, h) {
			return nil, fmt.Errorf("ca: host %q is outside the name constraints of %s (%s); create a CA for it with sessctl ca init --force or ca rotate --host",
				h, crtPath, strings.Join(p.cert.PermittedDNSDomains, ", "))
		}
		iss.hosts[h] = true
	}
	if !isSelfSigned(p.cert) {
		iss.chain = [][]byte{p.cert.Raw}
	}
	bundle, err := readBundle(a.dir, now, true)
	if err != nil {
		return nil, err
	}
	iss.bundle = bundle
	return iss, nil
}

// isSelfSigned reports whether cert is a root: runners hold it already, so
// it is not sent in the chain.
func isSelfSigned(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil
}

// Permits reports whether the DNS name constraints of ca allow host, with
// RFC 5280 semantics: "example.com" permits itself and names below it,
// ".example.com" only names below it. A CA with no permitted DNS names
// permits every name its exclusions leave.
func Permits(ca *x509.Certificate, host string) bool {
	match := func(c string) bool {
		c = strings.ToLower(c)
		if strings.HasPrefix(c, ".") {
			return strings.HasSuffix(host, c)
		}
		return host == c || strings.HasSuffix(host, "."+c)
	}
	for _, c := range ca.ExcludedDNSDomains {
		if match(c) {
			return false
		}
	}
	if len(ca.PermittedDNSDomains) == 0 {
		return true
	}
	for _, c := range ca.PermittedDNSDomains {
		if match(c) {
			return true
		}
	}
	return false
}

// Certificate returns the CA certificate that currently mints leaves.
func (a *Authority) Certificate() *x509.Certificate {
	return a.state.Load().cert
}

// CertPEM returns the PEM certificates runners should trust: the current
// CA, the next one while a rotation is pending, and the previous one until
// its retirement date, as of the last Load or Reload.
func (a *Authority) CertPEM() []byte {
	return bytes.Clone(a.state.Load().bundle)
}

// Stats returns the Authority's counters.
func (a *Authority) Stats() Stats {
	return Stats{Minted: a.minted.Load(), Hits: a.hits.Load(), Cached: a.cache.len()}
}

// allows reports whether the issuer may mint for name: one of its hosts,
// or a one-label name below the domain of one of its wildcards.
func (iss *issuer) allows(name string) bool {
	if iss.hosts[name] {
		return true
	}
	label, parent, ok := strings.Cut(name, ".")
	return ok && label != "" && slices.Contains(iss.wild, parent) && ValidHost(name) == nil
}
