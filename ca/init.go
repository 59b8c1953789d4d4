package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/x509util"
)

// DefaultHost is the host a CA is constrained to when no host is given.
const DefaultHost = "api.openai.com"

// DefaultCAValidity is the lifetime of a CA created without an explicit one.
const DefaultCAValidity = 5 * 365 * 24 * time.Hour

// caBackdate is how far in the past a CA's validity starts, for runners
// whose clocks are behind.
const caBackdate = time.Hour

// InitOptions configures [Init] and [Rotate].
type InitOptions struct {
	// Hosts are the DNS names the CA may issue for; its name constraints
	// permit exactly these (and, per RFC 5280, names below them). Init
	// defaults to [DefaultHost]; Rotate to the current CA's constraints.
	Hosts []string
	// Force replaces an existing CA (Init) or pending next CA (Rotate).
	// Init with Force also discards DIR/next and DIR/old.
	Force bool
	// Validity is the CA's lifetime. Init defaults to [DefaultCAValidity];
	// Rotate to the current CA's lifetime.
	Validity time.Duration
}

// caTemplate is the x509util template of a sessctl CA: a self-signed root
// that can sign leaves only (path length 0), whose critical name
// constraints permit the intercepted DNS names and exclude every IP
// address, so that trusting it trusts nothing else.
const caTemplate = `{
	"subject": {{ toJson .Subject }},
	"issuer": {{ toJson .Subject }},
	"keyUsage": ["certSign", "crlSign"],
	"basicConstraints": {"isCA": true, "maxPathLen": 0},
	"nameConstraints": {
		"critical": true,
		"permittedDNSDomains": {{ toJson .Hosts }},
		"excludedIPRanges": ["0.0.0.0/0", "::/0"]
	}
}`

// Init creates a new CA in dir: dir/ca.crt (PEM certificate) and dir/ca.key
// (PEM PKCS #8 ECDSA P-256 key, mode 0600); dir is created with mode 0700
// when missing. It refuses to replace an existing CA unless opts.Force.
func Init(dir string, opts InitOptions) error {
	if dir == "" {
		return errors.New("ca: init: no directory given")
	}
	hosts, err := ConstraintNames(opts.Hosts)
	if err != nil {
		return fmt.Errorf("ca: init: %w", err)
	}
	if len(hosts) == 0 {
		hosts = []string{DefaultHost}
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultCAValidity
	}
	if validity < 0 {
		return fmt.Errorf("ca: init: negative validity %v", validity)
	}
	crt, key := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	if !opts.Force && (exists(crt) || exists(key)) {
		return fmt.Errorf("ca: init: a CA already exists in %s; refusing to overwrite it (use --force to replace it, which makes runners that trust it fail)", dir)
	}
	cert, signer, err := newCA(hosts, time.Now(), validity)
	if err != nil {
		return fmt.Errorf("ca: init: %w", err)
	}
	if opts.Force {
		for _, sub := range []string{nextDir, oldDir} {
			if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
				return fmt.Errorf("ca: init: %w", err)
			}
		}
	}
	return writePair(dir, cert, signer)
}

// newCA creates a self-signed, name-constrained CA certificate and its key.
func newCA(hosts []string, now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	signer, err := keyutil.GenerateSigner("EC", "P-256", 0)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	ski, err := x509util.GenerateSubjectKeyID(signer.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("subject key id: %w", err)
	}
	// The key id in the name tells a current CA from its successor in a
	// trust store listing.
	subject := x509util.Subject{
		CommonName:   "sessctl interception CA " + hex.EncodeToString(ski[:4]),
		Organization: []string{"sessctl"},
	}
	csr, err := x509util.CreateCertificateRequest(subject.CommonName, nil, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate request: %w", err)
	}
	data := x509util.NewTemplateData()
	data.SetSubject(subject)
	data.Set("Hosts", hosts)
	tpl, err := x509util.NewCertificate(csr, x509util.WithTemplate(caTemplate, data))
	if err != nil {
		return nil, nil, fmt.Errorf("template: %w", err)
	}
	template := tpl.GetCertificate()
	template.SubjectKeyId = ski
	template.NotBefore = now.Add(-caBackdate).UTC().Truncate(time.Second)
	template.NotAfter = now.Add(validity).UTC().Truncate(time.Second)
	cert, err := x509util.CreateCertificate(template, template, signer.Public(), signer)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	return cert, signer, nil
}

// NormalizeHosts lower-cases host names, strips a trailing dot, removes
// duplicates and rejects anything that is not a plain DNS name (RFC 1123
// labels; no IP address, no wildcard), so that a name is safe to put in a
// certificate and to use as a file name.
func NormalizeHosts(in []string) ([]string, error) {
	var out []string
	seen := make(map[string]bool)
	for _, h := range in {
		n := NormalizeName(h)
		if err := ValidHost(n); err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// SplitWildcards separates the wildcard hosts of in ("*.example.com": any
// one-label name below example.com, which must have two labels or more)
// from the plain names. It returns the
// plain names normalized (see NormalizeHosts) and, for the wildcards, the
// domains they stand under, normalized too.
func SplitWildcards(in []string) (plain, domains []string, err error) {
	var names []string
	for _, h := range in {
		if d, ok := strings.CutPrefix(NormalizeName(h), "*."); ok {
			if err := ValidHost(d); err != nil {
				return nil, nil, fmt.Errorf("wildcard %q: %w", h, err)
			}
			if !strings.Contains(d, ".") {
				// "*.com" would make the CA good for a whole TLD.
				return nil, nil, fmt.Errorf("wildcard %q: want *.DOMAIN with a domain of two labels or more", h)
			}
			if !slices.Contains(domains, d) {
				domains = append(domains, d)
			}
			continue
		}
		names = append(names, h)
	}
	plain, err = NormalizeHosts(names)
	return plain, domains, err
}

// ConstraintNames is the list of permitted DNS names of a CA for the given
// hosts: each plain name, and for a wildcard "*.example.com" the domain
// example.com (which permits the names below it).
func ConstraintNames(hosts []string) ([]string, error) {
	plain, domains, err := SplitWildcards(hosts)
	if err != nil {
		return nil, err
	}
	for _, d := range domains {
		if !slices.Contains(plain, d) {
			plain = append(plain, d)
		}
	}
	return plain, nil
}

// NormalizeName is the canonical form of a DNS name for comparisons.
func NormalizeName(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// ValidHost accepts a DNS host name made of LDH labels (RFC 1123), not an
// IP address and not a wildcard.
func ValidHost(h string) error {
	if h == "" {
		return errors.New("empty host name")
	}
	if net.ParseIP(h) != nil {
		return fmt.Errorf("host %q is an IP address; only DNS names can be intercepted", h)
	}
	if len(h) > 253 {
		return fmt.Errorf("host name %.20q... is longer than 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q is not a valid DNS name (empty or over-long label)", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q is not a valid DNS name (label starts or ends with '-')", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("host %q is not a valid DNS name (character %q)", h, c)
			}
		}
	}
	return nil
}
