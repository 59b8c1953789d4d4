package stepca

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"

	"github.com/sessctl/sessctl/internal/keyfile"
)

// maxPEMFile bounds the PEM files this package reads.
const maxPEMFile = 1 << 20

// readRoots reads the PEM certificates of a root file into a pool; every
// certificate must be a CA.
func readRoots(path string) (*x509.CertPool, []*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("stepca: read root: %w", err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, nil, fmt.Errorf("stepca: root %s: %w", path, err)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("stepca: root %s: no certificate found", path)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, nil, fmt.Errorf("stepca: root %s: %q is not a CA certificate", path, c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	return pool, certs, nil
}

// parseCerts parses PEM "CERTIFICATE" blocks; any other block or trailing
// garbage is an error.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("larger than %d bytes", maxPEMFile)
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block is %.40q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data that is not PEM")
	}
	return certs, nil
}

// encodeCerts encodes DER certificates as PEM.
func encodeCerts(ders [][]byte) []byte {
	var buf bytes.Buffer
	for _, d := range ders {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	return buf.Bytes()
}

// encodeKey encodes a private key as PEM PKCS #8.
func encodeKey(key crypto.PrivateKey) ([]byte, error) {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// encodeBundle is the content of a leaves/HOST.pem file: the private key,
// then the certificate chain, leaf first.
func encodeBundle(cert *tls.Certificate) ([]byte, error) {
	key, err := encodeKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	return append(key, encodeCerts(cert.Certificate)...), nil
}

// parseBundle parses a leaves/HOST.pem file: one private key and at least
// one certificate whose public key is the key's, leaf first. Errors never
// quote the key.
func parseBundle(data []byte) (*tls.Certificate, error) {
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("larger than %d bytes", maxPEMFile)
	}
	var (
		key  crypto.Signer
		cert tls.Certificate
		rest = data
	)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			cert.Certificate = append(cert.Certificate, block.Bytes)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			if key != nil {
				return nil, errors.New("more than one private key")
			}
			k, err := pemutil.ParseKey(pem.EncodeToMemory(block))
			if err != nil {
				return nil, errors.New("the private key cannot be parsed")
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("a %T private key cannot sign", k)
			}
			key = s
		default:
			return nil, fmt.Errorf("unexpected PEM block %.40q", block.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data that is not PEM")
	}
	if key == nil {
		return nil, errors.New("no private key")
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("leaf certificate: %w", err)
	}
	for i, der := range cert.Certificate[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("chain certificate %d: %w", i+2, err)
		}
	}
	if err := keyutil.VerifyPair(leaf.PublicKey, key); err != nil {
		return nil, errors.New("the private key is not the certificate's")
	}
	cert.PrivateKey = key
	cert.Leaf = leaf
	return &cert, nil
}

// checkKeyMode refuses a secret file (private key, password) that group
// or others may access.
func checkKeyMode(path string) error { return keyfile.CheckPrivate(path) }

// writeFileAtomic writes data to path atomically and durably.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := keyfile.WriteAtomic(path, data, perm); err != nil {
		return fmt.Errorf("stepca: %w", err)
	}
	return nil
}
