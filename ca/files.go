package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"

	"github.com/sessctl/sessctl/internal/keyfile"
)

// File layout inside a CA directory.
const (
	certFile   = "ca.crt"
	keyFile    = "ca.key"
	nextDir    = "next"
	oldDir     = "old"
	retireFile = "retire-after"
)

// pair is a CA certificate with its private key, as read from one directory.
type pair struct {
	dir    string
	cert   *x509.Certificate
	signer crypto.Signer
}

// exists reports whether path exists. Errors other than "not found" count as
// existing so that callers refuse to overwrite what they cannot inspect.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// readCert reads the first certificate of a PEM file and rejects trailing
// garbage that is not a certificate.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: read certificate: %w", err)
	}
	cert, err := parseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate %s: %w", path, err)
	}
	return cert, nil
}

// parseCertPEM parses exactly one PEM "CERTIFICATE" block.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data found")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("unexpected data after the certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return cert, nil
}

// checkKeyMode refuses a key file that group or others may read or write.
func checkKeyMode(path string) error {
	if err := keyfile.CheckPrivate(path); err != nil {
		return fmt.Errorf("ca: private key %w", err)
	}
	return nil
}

// readKey reads a PEM private key after checking the file's mode. Parse
// errors never quote the file's content.
func readKey(path string) (crypto.Signer, error) {
	if err := checkKeyMode(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: read private key: %w", err)
	}
	key, err := pemutil.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("ca: private key %s: not a PEM private key", path)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: private key %s: %T cannot sign", path, key)
	}
	return signer, nil
}

// readPair reads dir/ca.crt and dir/ca.key and checks that they belong
// together and form a CA that can issue certificates.
func readPair(dir string) (*pair, error) {
	crt := filepath.Join(dir, certFile)
	if _, err := os.Stat(crt); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: no CA in %s (create one with: sessctl ca init --dir %s): %w", dir, dir, err)
	}
	cert, err := readCert(crt)
	if err != nil {
		return nil, err
	}
	signer, err := readKey(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	if err := keyutil.VerifyPair(cert.PublicKey, signer); err != nil {
		return nil, fmt.Errorf("ca: %s and %s do not match: the key is not the certificate's", filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("ca: %s is not a CA certificate (basic constraints CA:true missing)", filepath.Join(dir, certFile))
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca: %s may not sign certificates (key usage keyCertSign missing)", filepath.Join(dir, certFile))
	}
	return &pair{dir: dir, cert: cert, signer: signer}, nil
}

// writeFileAtomic writes data to path atomically and durably.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := keyfile.WriteAtomic(path, data, perm); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	if err := keyfile.SyncDir(dir); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// writePair writes cert and key into dir (created 0700 when missing).
func writePair(dir string, cert *x509.Certificate, key crypto.Signer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca: create %s: %w", dir, err)
	}
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return fmt.Errorf("ca: encode private key: %w", err)
	}
	// The key goes first: a certificate without its key is refused by Load
	// with a clear message, which is better than the reverse.
	if err := writeFileAtomic(filepath.Join(dir, keyFile), pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, certFile), certPEM(cert), 0o644)
}

// certPEM encodes one certificate as PEM.
func certPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// readRetireAfter reads dir/retire-after (RFC 3339).
func readRetireAfter(dir string) (time.Time, error) {
	path := filepath.Join(dir, retireFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("ca: read retirement date: %w", err)
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(data)))
	if err != nil {
		return time.Time{}, fmt.Errorf("ca: %s: not an RFC 3339 time", path)
	}
	return t, nil
}
