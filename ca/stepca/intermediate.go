package stepca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sessctl/sessctl/ca"
)

// Intermediate mints leaves with an intermediate CA that step-ca signed:
// an [ca.Authority] over the enrolled directory, whose leaves also carry
// step-ca's own intermediates (DIR/chain.crt), so that a client trusting
// only step-ca's root verifies them. Its other methods are the
// Authority's.
type Intermediate struct {
	*ca.Authority
	extra [][]byte // DER certificates sent after ca.crt
}

// LoadIntermediate loads the CA in dir with [ca.Load] and the certificates
// of dir/chain.crt, when present, that link it to step-ca's root.
func LoadIntermediate(dir string, opts ca.LoadOptions) (*Intermediate, error) {
	a, err := ca.Load(dir, opts)
	if err != nil {
		return nil, err
	}
	i := &Intermediate{Authority: a}
	path := filepath.Join(dir, chainFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return i, nil
	case err != nil:
		return nil, fmt.Errorf("stepca: read chain: %w", err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("stepca: chain %s: %w", path, err)
	}
	for _, c := range certs {
		i.extra = append(i.extra, c.Raw)
	}
	return i, nil
}

// GetCertificate returns a leaf for the client's SNI name, followed by the
// whole chain up to step-ca's root; it fits [tls.Config.GetCertificate].
func (i *Intermediate) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := i.Authority.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	return i.withChain(c), nil
}

// Leaf returns a leaf for name like [ca.Authority.Leaf], followed by the
// whole chain up to step-ca's root.
func (i *Intermediate) Leaf(name string) (*tls.Certificate, error) {
	c, err := i.Authority.Leaf(name)
	if err != nil {
		return nil, err
	}
	return i.withChain(c), nil
}

// withChain returns a copy of c whose chain ends with the extra
// certificates, unless it already does.
func (i *Intermediate) withChain(c *tls.Certificate) *tls.Certificate {
	if len(i.extra) == 0 || endsWith(c.Certificate, i.extra) {
		return c
	}
	out := *c
	out.Certificate = append(append(make([][]byte, 0, len(c.Certificate)+len(i.extra)), c.Certificate...), i.extra...)
	return &out
}

// endsWith reports whether chain ends with tail.
func endsWith(chain, tail [][]byte) bool {
	if len(tail) > len(chain) {
		return false
	}
	off := len(chain) - len(tail)
	for j, d := range tail {
		if !bytes.Equal(chain[off+j], d) {
			return false
		}
	}
	return true
}

// checkIntermediate checks that step-ca made a CA sessctl can use: a CA
// certificate that may sign certificates, with critical DNS name
// constraints that permit every host.
func checkIntermediate(cert *x509.Certificate, hosts []string) error {
	const hint = "the provisioner's X.509 template must make a name-constrained CA; see docs/ca.md"
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("stepca: step-ca issued a certificate that is not a CA (%s)", hint)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("stepca: step-ca issued a CA without key usage keyCertSign (%s)", hint)
	}
	if len(cert.PermittedDNSDomains) == 0 || !cert.PermittedDNSDomainsCritical {
		return fmt.Errorf("stepca: step-ca issued a CA without critical DNS name constraints; refusing it, since runners trusting step-ca's root would trust sessctl for every site (%s)", hint)
	}
	for _, h := range hosts {
		if !ca.Permits(cert, h) {
			return fmt.Errorf("stepca: the CA step-ca issued does not permit %s (it permits %s); add it to the provisioner template's permitted names",
				h, strings.Join(cert.PermittedDNSDomains, ", "))
		}
	}
	return nil
}
