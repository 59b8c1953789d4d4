package stepca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sessctl/sessctl/ca"
)

// intermediateSubject is the subject of the one-time token sessctl makes
// for an intermediate CA, and so the CA's common name.
const intermediateSubject = "sessctl interception CA"

// EnrollOptions configures [Enroll].
type EnrollOptions struct {
	CAURL    string // step-ca's URL; required
	RootFile string // PEM file of step-ca's root; required
	Dir      string // the directory to enroll; required
	Mode     Mode   // default ModeLeaf

	// Provisioner and PasswordFile name a JWK provisioner and the file
	// holding the password that decrypts its key. Token is a one-time
	// token from "step ca token" to use instead (or first). At least one
	// of PasswordFile and Token is required.
	Provisioner  string
	PasswordFile string
	Token        string

	// Hosts are the intercepted hosts. Default: the token's SANs when a
	// token is given, else [DefaultHost].
	Hosts []string
	// Lifetime is the certificate lifetime asked of step-ca (leaves in
	// leaf mode, the CA in intermediate mode); 0 = the provisioner's
	// default. The provisioner's claims bound it.
	Lifetime time.Duration
	// Force replaces an existing CA in Dir (intermediate mode).
	Force bool
	// Timeout bounds one request to step-ca; default [DefaultTimeout].
	Timeout time.Duration
	// Logger receives progress and warnings; default slog.Default().
	Logger *slog.Logger
}

// EnrollResult describes a successful enrollment.
type EnrollResult struct {
	Mode  Mode
	Hosts []string
	// Certificates are the leaves obtained, one per host (leaf mode), or
	// the intermediate CA (intermediate mode).
	Certificates []*x509.Certificate
}

// Enroll obtains sessctl's certificates from step-ca and writes Dir so
// that [OpenLeaves] (leaf mode) or [LoadIntermediate] (intermediate mode)
// can use it. It records the enrollment in Dir/stepca.json and step-ca's
// root in Dir/root.crt, but never the password or the token.
//
// In leaf mode it obtains a certificate for every host now, which checks
// the URL, root, provisioner and password at once. In intermediate mode it
// checks that step-ca issued a name-constrained CA for the hosts, and that
// a leaf minted with it verifies up to step-ca's root, before it writes
// anything.
func Enroll(ctx context.Context, o EnrollOptions) (*EnrollResult, error) {
	if o.Mode == "" {
		o.Mode = ModeLeaf
	}
	if o.Mode != ModeLeaf && o.Mode != ModeIntermediate {
		return nil, fmt.Errorf("stepca: unknown mode %.40q (want %q or %q)", o.Mode, ModeLeaf, ModeIntermediate)
	}
	switch {
	case o.CAURL == "":
		return nil, errors.New("stepca: enroll: no step-ca URL (--ca-url)")
	case o.RootFile == "":
		return nil, errors.New("stepca: enroll: no root certificate (--root)")
	case o.Dir == "":
		return nil, errors.New("stepca: enroll: no directory (--dir)")
	case o.PasswordFile == "" && o.Token == "":
		return nil, errors.New("stepca: enroll: give a provisioner password file (--password-file) or a one-time token (--token)")
	case o.PasswordFile != "" && o.Provisioner == "":
		return nil, errors.New("stepca: enroll: a password file needs the provisioner's name (--provisioner)")
	case o.Lifetime < 0:
		return nil, fmt.Errorf("stepca: enroll: negative lifetime %v", o.Lifetime)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	roots, rootCerts, err := readRoots(o.RootFile)
	if err != nil {
		return nil, err
	}
	var password []byte
	if o.PasswordFile != "" {
		if password, err = readPassword(o.PasswordFile); err != nil {
			return nil, err
		}
		defer clear(password)
		if o.PasswordFile, err = filepath.Abs(o.PasswordFile); err != nil {
			return nil, fmt.Errorf("stepca: enroll: %w", err)
		}
	}
	hosts, err := ca.NormalizeHosts(o.Hosts)
	if err != nil {
		return nil, fmt.Errorf("stepca: enroll: %w", err)
	}
	if len(hosts) == 0 && o.Token != "" {
		claims, err := parseToken(o.Token)
		if err != nil {
			return nil, err
		}
		if hosts, err = ca.NormalizeHosts(claims.SANs); err != nil {
			return nil, fmt.Errorf("stepca: enroll: the token's names: %w", err)
		}
	}
	if len(hosts) == 0 {
		hosts = []string{DefaultHost}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("stepca: enroll: %w", err)
	}
	e := &Enrollment{
		Mode: o.Mode, CAURL: o.CAURL, Provisioner: o.Provisioner,
		PasswordFile: o.PasswordFile, Hosts: hosts, Lifetime: o.Lifetime,
	}
	var res *EnrollResult
	if o.Mode == ModeLeaf {
		res, err = enrollLeaves(ctx, o, roots, password, hosts)
	} else {
		res, err = enrollIntermediate(ctx, o, roots, password, hosts)
	}
	if err != nil {
		return nil, err
	}
	var rootPEM [][]byte
	for _, c := range rootCerts {
		rootPEM = append(rootPEM, c.Raw)
	}
	if err := writeFileAtomic(filepath.Join(o.Dir, rootFile), encodeCerts(rootPEM), 0o644); err != nil {
		return nil, err
	}
	if err := writeEnrollment(o.Dir, e); err != nil {
		return nil, err
	}
	return res, nil
}

// enrollLeaves obtains and keeps a certificate for every host.
func enrollLeaves(ctx context.Context, o EnrollOptions, roots *x509.CertPool, password []byte, hosts []string) (*EnrollResult, error) {
	l, err := NewLeaves(Config{
		CAURL: o.CAURL, Roots: roots, Dir: o.Dir, Hosts: hosts, Lifetime: o.Lifetime,
		Provisioner: o.Provisioner, Password: password, Token: o.Token,
		Timeout: o.Timeout, Logger: o.Logger,
	})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	res := &EnrollResult{Mode: ModeLeaf, Hosts: hosts}
	for _, h := range hosts {
		c, err := l.Certificate(ctx, h)
		if err != nil {
			return nil, err
		}
		res.Certificates = append(res.Certificates, c.Leaf)
	}
	return res, nil
}

// enrollIntermediate has step-ca sign a name-constrained CA, checks it,
// and writes it as Dir/ca.crt, Dir/ca.key and Dir/chain.crt.
func enrollIntermediate(ctx context.Context, o EnrollOptions, roots *x509.CertPool, password []byte, hosts []string) (*EnrollResult, error) {
	crt, key := filepath.Join(o.Dir, caCertFile), filepath.Join(o.Dir, caKeyFile)
	if !o.Force && (exists(crt) || exists(key)) {
		return nil, fmt.Errorf("stepca: enroll: a CA already exists in %s; refusing to overwrite it (use --force to replace it)", o.Dir)
	}
	c, err := newClient(o.CAURL, roots, o.Timeout, o.Provisioner, password)
	if err != nil {
		return nil, err
	}
	defer c.close()
	tok := o.Token
	if tok == "" {
		if tok, err = c.token(intermediateSubject, hosts...); err != nil {
			return nil, err
		}
	}
	cert, err := c.sign(ctx, tok, o.Lifetime)
	if err != nil {
		return nil, err
	}
	if err := checkIntermediate(cert.Leaf, hosts); err != nil {
		return nil, err
	}
	if !cert.Leaf.MaxPathLenZero || cert.Leaf.MaxPathLen != 0 {
		o.Logger.Warn("stepca: the intermediate CA may sign other CAs (no path length 0); its name constraints still bind them")
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("stepca: chain from step-ca: %w", err)
		}
		inter.AddCert(ic)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("stepca: the intermediate CA does not verify with the given root: %w", err)
	}

	// Write into a fresh directory beside the target, check that leaves
	// minted there verify up to the root, then move the files in.
	tmp, err := os.MkdirTemp(o.Dir, ".enroll")
	if err != nil {
		return nil, fmt.Errorf("stepca: enroll: %w", err)
	}
	defer os.RemoveAll(tmp)
	keyPEM, err := encodeKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("stepca: enroll: %w", err)
	}
	defer clear(keyPEM)
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{caKeyFile, keyPEM, 0o600}, // key first: a certificate without its key is refused clearly
		{caCertFile, encodeCerts(cert.Certificate[:1]), 0o644},
		{chainFile, encodeCerts(cert.Certificate[1:]), 0o644},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(tmp, f.name), f.data, f.perm); err != nil {
			return nil, err
		}
	}
	if err := checkMinting(tmp, hosts, roots, o.Logger); err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := os.Rename(filepath.Join(tmp, f.name), filepath.Join(o.Dir, f.name)); err != nil {
			return nil, fmt.Errorf("stepca: enroll: %w", err)
		}
	}
	return &EnrollResult{Mode: ModeIntermediate, Hosts: hosts, Certificates: []*x509.Certificate{cert.Leaf}}, nil
}

// checkMinting mints a leaf for each host from the CA in dir and verifies
// it as a client trusting only roots would.
func checkMinting(dir string, hosts []string, roots *x509.CertPool, log *slog.Logger) error {
	li, err := LoadIntermediate(dir, ca.LoadOptions{Hosts: hosts, Logger: log})
	if err != nil {
		return err
	}
	for _, h := range hosts {
		leaf, err := li.GetCertificate(&tls.ClientHelloInfo{ServerName: h})
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, der := range leaf.Certificate[1:] {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("stepca: minted chain: %w", err)
			}
			inter.AddCert(c)
		}
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, Intermediates: inter}); err != nil {
			return fmt.Errorf("stepca: a leaf minted with the new intermediate CA does not verify with step-ca's root (is step-ca's own intermediate limited to path length 0? see docs/ca.md): %w", err)
		}
	}
	return nil
}

// OpenLeaves returns the [Leaves] of a directory enrolled in leaf mode,
// reading the provisioner password from the recorded password file. It
// does not contact step-ca.
func OpenLeaves(dir string, log *slog.Logger) (*Leaves, error) {
	e, err := ReadEnrollment(dir)
	if err != nil {
		return nil, err
	}
	if e.Mode != ModeLeaf {
		return nil, fmt.Errorf("stepca: %s is enrolled in %s mode, not leaf mode", dir, e.Mode)
	}
	roots, _, err := readRoots(filepath.Join(dir, rootFile))
	if err != nil {
		return nil, err
	}
	var password []byte
	if e.PasswordFile != "" {
		if password, err = readPassword(e.PasswordFile); err != nil {
			return nil, err
		}
	}
	return NewLeaves(Config{
		CAURL: e.CAURL, Roots: roots, Dir: dir, Hosts: e.Hosts, Lifetime: e.Lifetime,
		Provisioner: e.Provisioner, Password: password, Logger: log,
	})
}

// exists reports whether path exists; errors other than "not found" count
// as existing so that nothing is overwritten that cannot be inspected.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
