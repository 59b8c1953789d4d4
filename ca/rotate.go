package ca

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Bundle returns the PEM certificates runners should trust, as of now: the
// CA in dir, then dir/next/ca.crt while a rotation is pending, then
// dir/old/ca.crt until its retirement date. It needs no private key.
func Bundle(dir string, now time.Time) ([]byte, error) {
	return readBundle(dir, now, false)
}

// readBundle assembles the trust bundle; with checkKeys it also refuses
// accessible key files of the next and old CAs.
func readBundle(dir string, now time.Time, checkKeys bool) ([]byte, error) {
	var buf bytes.Buffer
	cur, err := readCert(filepath.Join(dir, certFile))
	if err != nil {
		return nil, err
	}
	buf.Write(certPEM(cur))
	for _, sub := range []string{nextDir, oldDir} {
		d := filepath.Join(dir, sub)
		crt := filepath.Join(d, certFile)
		if !exists(crt) {
			continue
		}
		if checkKeys && exists(filepath.Join(d, keyFile)) {
			if err := checkKeyMode(filepath.Join(d, keyFile)); err != nil {
				return nil, err
			}
		}
		if sub == oldDir {
			retire, err := readRetireAfter(d)
			if err != nil {
				return nil, err
			}
			if !now.Before(retire) {
				continue // retired
			}
		}
		c, err := readCert(crt)
		if err != nil {
			return nil, err
		}
		buf.Write(certPEM(c))
	}
	return buf.Bytes(), nil
}

// Rotate creates the next CA in dir/next, beside the current one, so that
// runners can be given the bundle (current + next) before [Promote]
// switches minting to it. Hosts and validity default to the current CA's.
// It refuses to replace a pending next CA unless opts.Force.
func Rotate(dir string, opts InitOptions) error {
	cur, err := readPair(dir)
	if err != nil {
		return fmt.Errorf("ca: rotate: %w", err)
	}
	next := filepath.Join(dir, nextDir)
	if !opts.Force && (exists(filepath.Join(next, certFile)) || exists(filepath.Join(next, keyFile))) {
		return fmt.Errorf("ca: rotate: a next CA is already pending in %s; promote it first (or use --force to replace it)", next)
	}
	hosts, err := ConstraintNames(opts.Hosts)
	if err != nil {
		return fmt.Errorf("ca: rotate: %w", err)
	}
	if len(hosts) == 0 {
		hosts = cur.cert.PermittedDNSDomains
	}
	if len(hosts) == 0 {
		hosts = []string{DefaultHost}
	}
	validity := opts.Validity
	if validity == 0 {
		validity = cur.cert.NotAfter.Sub(cur.cert.NotBefore) - caBackdate
	}
	if validity <= 0 {
		return fmt.Errorf("ca: rotate: invalid validity %v", validity)
	}
	cert, signer, err := newCA(hosts, time.Now(), validity)
	if err != nil {
		return fmt.Errorf("ca: rotate: %w", err)
	}
	return writePair(next, cert, signer)
}

// Promote makes the pending next CA (dir/next) the current one and keeps
// the current one in dir/old, included in [Bundle] until retireAfter. It
// refuses while an earlier old CA is still within its retirement date.
// Running Authorities switch on [Authority.Reload].
//
// The switch renames two files; a crash between them leaves a certificate
// and key that do not match, which Load refuses with a clear error rather
// than minting with the wrong key.
func Promote(dir string, retireAfter time.Time) error {
	next := filepath.Join(dir, nextDir)
	if !exists(filepath.Join(next, certFile)) {
		return fmt.Errorf("ca: promote: no next CA in %s; run sessctl ca rotate first", next)
	}
	np, err := readPair(next)
	if err != nil {
		return fmt.Errorf("ca: promote: %w", err)
	}
	now := time.Now()
	if now.Before(np.cert.NotBefore) || now.After(np.cert.NotAfter) {
		return fmt.Errorf("ca: promote: the next CA in %s is not valid now", next)
	}
	cur, err := readPair(dir)
	if err != nil {
		return fmt.Errorf("ca: promote: %w", err)
	}
	old := filepath.Join(dir, oldDir)
	if exists(old) {
		retire, err := readRetireAfter(old)
		if err != nil {
			return fmt.Errorf("ca: promote: %w", err)
		}
		if now.Before(retire) {
			return fmt.Errorf("ca: promote: %s still holds the previous CA, trusted until %s; promote after that date or remove %s", old, retire.Format(time.RFC3339), old)
		}
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("ca: promote: remove retired CA: %w", err)
		}
	}

	// Keep the current CA as old/, written completely before it appears.
	tmp := filepath.Join(dir, ".old.tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("ca: promote: %w", err)
	}
	if err := writePair(tmp, cur.cert, cur.signer); err != nil {
		return fmt.Errorf("ca: promote: %w", err)
	}
	stamp := []byte(retireAfter.UTC().Format(time.RFC3339) + "\n")
	if err := writeFileAtomic(filepath.Join(tmp, retireFile), stamp, 0o644); err != nil {
		return fmt.Errorf("ca: promote: %w", err)
	}
	if err := os.Rename(tmp, old); err != nil {
		return fmt.Errorf("ca: promote: %w", err)
	}

	// Switch: key first, then certificate, then drop next/.
	for _, f := range []string{keyFile, certFile} {
		if err := os.Rename(filepath.Join(next, f), filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("ca: promote: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("ca: promote: %w", err)
	}
	if err := os.RemoveAll(next); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ca: promote: %w", err)
	}
	return nil
}
