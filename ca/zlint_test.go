package ca

import (
	"slices"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// zlintIgnored are the lints that fire on sessctl's certificates and are
// deliberately ignored, with the reason. Every other lint must report no
// warning, error or fatal.
var zlintIgnored = map[string]string{
	"e_ca_country_name_missing": "CA/B Forum subject rules for publicly trusted CAs; " +
		"a private interception CA has no meaningful country",
	"w_root_ca_basic_constraints_path_len_constraint_field_present": "deliberate: " +
		"pathLenConstraint 0 stops the CA key from creating intermediate CAs",
	"e_sub_cert_aia_missing": "a private CA runs no OCSP responder or CA-issuers URL; " +
		"leaves live 24 h and runners hold the root",
	"w_sub_cert_aia_does_not_contain_issuing_ca_url": "as e_sub_cert_aia_missing",
	"e_sub_cert_certificate_policies_missing": "CA/B Forum policy OIDs assert public-trust " +
		"domain validation, which a private CA does not perform",
	"e_sub_cert_cert_policy_empty": "as e_sub_cert_certificate_policies_missing",
	"w_ext_subject_key_identifier_not_recommended_subscriber": "the CA/B Forum discourages a leaf SKI " +
		"but RFC 5280 4.2.1.2 asks for one (w_ext_subject_key_identifier_missing_sub_cert); " +
		"the RFC is what applies to a private CA",
}

func TestZlint(t *testing.T) {
	known := lint.GlobalRegistry().Names()
	for name := range zlintIgnored {
		if !slices.Contains(known, name) {
			t.Errorf("ignored lint %s does not exist in zlint", name)
		}
	}
	dir, a := newTestCA(t, InitOptions{Hosts: []string{"api.openai.com", "files.openai.com"}}, LoadOptions{})
	leaf, err := a.Leaf("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := Rotate(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	next, err := readCert(dir + "/next/" + certFile)
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string][]byte{
		"CA":      a.Certificate().Raw,
		"next CA": next.Raw,
		"leaf":    leaf.Leaf.Raw,
	}
	for what, der := range certs {
		c, err := zx509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s: zcrypto parse: %v", what, err)
		}
		rs := zlint.LintCertificate(c)
		ran := 0
		for name, r := range rs.Results {
			if r.Status == lint.Pass {
				ran++
			}
			if r.Status < lint.Warn {
				continue
			}
			if _, ok := zlintIgnored[name]; ok {
				continue
			}
			t.Errorf("%s: zlint %s: %s %s (source %s)", what, name, r.Status, r.Details, r.LintMetadata.Source)
		}
		if ran == 0 {
			t.Errorf("%s: no lint passed; zlint did not run", what)
		}
	}
}
