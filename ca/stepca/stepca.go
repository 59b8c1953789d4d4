// Package stepca obtains sessctl's interception certificates from an
// existing smallstep step-ca, so that runners which already trust the
// organisation's root trust sessctl with no change. It is the only package
// of sessctl that imports github.com/smallstep/certificates.
//
// It works in one of two modes:
//
//   - leaf ([ModeLeaf]): sessctl holds no CA key at all. [Leaves] obtains a
//     certificate for each intercepted host from step-ca through a JWK
//     provisioner, keeps it with its key under DIR/leaves, and renews it at
//     about two thirds of its lifetime, with jitter, backing off while
//     step-ca fails. Certificates already held keep serving until they
//     expire, step-ca or not.
//   - intermediate ([ModeIntermediate]): [Enroll] has step-ca sign a
//     name-constrained intermediate CA (the provisioner needs an X.509
//     template that allows it; see docs/ca.md) and writes it as a CA
//     directory that ca.Load reads; [LoadIntermediate] mints leaves from it
//     and sends step-ca's intermediates along.
//
// A directory written by [Enroll] holds:
//
//	stepca.json       the enrollment: mode, CA URL, provisioner, password file, hosts
//	root.crt          step-ca's root: what runners trust
//	leaves/HOST.pem   leaf mode: key and certificate chain for HOST (mode 0600)
//	ca.crt, ca.key    intermediate mode: the intermediate CA and its key (0600)
//	chain.crt         intermediate mode: step-ca's certificates between ca.crt and root.crt
//
// Neither the provisioner password nor a one-time token is ever written to
// disk, logged, or quoted in an error.
package stepca

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessctl/sessctl/ca"
)

// Mode is how sessctl uses step-ca.
type Mode string

// Enrollment modes.
const (
	// ModeLeaf obtains one certificate per intercepted host from step-ca;
	// sessctl holds no CA key.
	ModeLeaf Mode = "leaf"
	// ModeIntermediate obtains a name-constrained intermediate CA from
	// step-ca once; sessctl mints leaves with it.
	ModeIntermediate Mode = "intermediate"
)

// DefaultHost is the host enrolled when none is given.
const DefaultHost = "api.openai.com"

// File layout inside an enrolled directory.
const (
	enrollmentFile = "stepca.json"
	rootFile       = "root.crt"
	chainFile      = "chain.crt"
	leavesDir      = "leaves"
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
)

// ErrUnavailable is returned (wrapped) when step-ca cannot be reached.
var ErrUnavailable = errors.New("step-ca unreachable")

// ErrNotIntercepted is returned (wrapped) for a certificate request for a
// host that was not enrolled.
var ErrNotIntercepted = errors.New("not an intercepted host")

// Enrollment is what [Enroll] records in DIR/stepca.json, so that a later
// start can reopen the same step-ca.
type Enrollment struct {
	Mode  Mode   // ModeLeaf or ModeIntermediate
	CAURL string // step-ca's URL
	// Provisioner is the JWK provisioner's name.
	Provisioner string
	// PasswordFile is the path of the file holding the provisioner's
	// password; empty when enrolled with a one-time token only.
	PasswordFile string
	Hosts        []string      // intercepted hosts
	Lifetime     time.Duration // requested certificate lifetime; 0 = provisioner default
}

// enrollmentJSON is the on-disk form of an Enrollment.
type enrollmentJSON struct {
	Mode         Mode     `json:"mode"`
	CAURL        string   `json:"ca_url"`
	Provisioner  string   `json:"provisioner,omitempty"`
	PasswordFile string   `json:"password_file,omitempty"`
	Hosts        []string `json:"hosts"`
	Lifetime     string   `json:"lifetime,omitempty"`
}

// ReadEnrollment reads DIR/stepca.json. A directory without one was not
// enrolled: the error then wraps fs.ErrNotExist.
func ReadEnrollment(dir string) (*Enrollment, error) {
	path := filepath.Join(dir, enrollmentFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stepca: read enrollment: %w", err)
	}
	e, err := parseEnrollment(data)
	if err != nil {
		return nil, fmt.Errorf("stepca: enrollment %s: %w", path, err)
	}
	return e, nil
}

// parseEnrollment decodes and checks the content of stepca.json.
func parseEnrollment(data []byte) (*Enrollment, error) {
	var j enrollmentJSON
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the JSON object")
	}
	e := &Enrollment{Mode: j.Mode, CAURL: j.CAURL, Provisioner: j.Provisioner, PasswordFile: j.PasswordFile}
	switch e.Mode {
	case ModeLeaf, ModeIntermediate:
	default:
		return nil, fmt.Errorf("unknown mode %.40q (want %q or %q)", e.Mode, ModeLeaf, ModeIntermediate)
	}
	if e.CAURL == "" {
		return nil, errors.New("no ca_url")
	}
	hosts, err := ca.NormalizeHosts(j.Hosts)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, errors.New("no hosts")
	}
	e.Hosts = hosts
	if j.Lifetime != "" {
		d, err := time.ParseDuration(j.Lifetime)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("lifetime %.40q is not a positive duration", j.Lifetime)
		}
		e.Lifetime = d
	}
	return e, nil
}

// writeEnrollment writes e to DIR/stepca.json.
func writeEnrollment(dir string, e *Enrollment) error {
	j := enrollmentJSON{
		Mode: e.Mode, CAURL: e.CAURL, Provisioner: e.Provisioner,
		PasswordFile: e.PasswordFile, Hosts: e.Hosts,
	}
	if e.Lifetime > 0 {
		j.Lifetime = e.Lifetime.String()
	}
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("stepca: encode enrollment: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, enrollmentFile), append(data, '\n'), 0o644)
}

// readPassword reads a provisioner password file the way the step CLI
// does: its content with surrounding white space removed. Like a key
// file, it must not be accessible by group or others. The error never
// quotes the content.
func readPassword(path string) ([]byte, error) {
	if err := checkKeyMode(path); err != nil {
		return nil, fmt.Errorf("stepca: password file: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stepca: read password file: %w", err)
	}
	pw := []byte(strings.TrimSpace(string(data)))
	clear(data)
	if len(pw) == 0 {
		return nil, fmt.Errorf("stepca: password file %s is empty", path)
	}
	return pw, nil
}
