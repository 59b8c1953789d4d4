package rules

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// Fake tokens in the shape of real ones. They are built here, not written
// out, so that secret scanners reading this repository stay quiet.
var (
	alnum36    = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
	alnum40    = alnum36 + "s9T0"
	fakeTokens = map[string][]string{
		"aws-access-key": {"AKIA" + "IOSFODNN7EXAMPLE", "ASIA" + "Y34FZKBOKMUTVV7A", "A3T" + "X" + "ABCDEFGHIJKLMNOP"},
		"aws-secret-access-key": {
			"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		},
		"github-token":            {"gh" + "p_" + alnum36, "gh" + "s_" + alnum36, "gh" + "o_" + alnum36, "gh" + "u_" + alnum36, "gh" + "r_" + alnum36},
		"github-fine-grained-pat": {"github" + "_pat_" + "11ABCDEFG0123456789abc_" + strings.Repeat("Zy9", 19) + "xw"},
		"gitlab-token":            {"gl" + "pat-" + "xYz12_ABcd-efGH3456ij", "gl" + "rt-" + "abcdefghijklmnopqrstuv", "gl" + "pat-" + "AbCdEfGhIjKlMnOpQrStUvWxYz01.01.0abcdefgh"},
		"anthropic-api-key":       {"sk-" + "ant-api03-" + strings.Repeat("Ab3_", 23) + "xAA", "sk-" + "ant-admin01-" + strings.Repeat("Qz9-", 23) + "xAA"},
		"openai-api-key": {
			"sk-" + "proj-" + strings.Repeat("Ab1_Cd2-", 10) + "T3Blbk" + "FJ" + strings.Repeat("Ef3", 10),
			"sk-" + "abcdefghij0123456789" + "T3Blbk" + "FJ" + "0123456789abcdefghij",
			"sk-" + "svcacct-" + strings.Repeat("Zz9", 20),
			"sk-" + "admin-" + strings.Repeat("Q1w", 20),
		},
		"slack-token":   {"xo" + "xb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xo" + "xp-1234567890-1234567890-1234567890123-abcdef0123456789abcdef0123456789", "xa" + "pp-1-A0123456789-1234567890123-abcdef"},
		"slack-webhook": {"hooks.slack.com/" + "services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"},
		"stripe-key":    {"sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "rk" + "_live_" + "51HxYzAbCdEfGhIj", "sk" + "_test_" + "4eC39HqLyjWDarjtT1zdp7dc"},
		"google-api-key": {
			"AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
		},
		"npm-token":  {"npm_" + alnum36},
		"pypi-token": {"pypi-" + "AgEIcHlwaS5vcmc" + strings.Repeat("Cj0xNz", 12)},
		"private-key": {
			"-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c3Rk\nZm9vYmFy==\n-----END RSA PRIVATE KEY-----",
			"-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
			"-----BEGIN " + "PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIF2x\n-----END PRIVATE KEY-----",
			"-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0w\n-----END ENCRYPTED PRIVATE KEY-----",
			"-----BEGIN " + "EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk", // truncated: the key material still goes
		},
		"jwt": {"eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ" + "zdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"},
	}
	// Near misses: none of these may fire the named rule.
	nearMisses = map[string][]string{
		"aws-access-key":          {"AKIA" + "IOSFODNN7EXAMPL", "akia" + "iosfodnn7example", "X" + "AKIA" + "IOSFODNN7EXAMPLE", "AKIA" + "IOSFODNN7EXAMPLE1", "AKIA" + "IOSFODNN7EXAMP1E"},
		"aws-secret-access-key":   {"aws_secret_access_key = " + strings.Repeat("x", 40), "secret_access_key: tooshort", "aws_access_key_id = " + alnum40},
		"github-token":            {"gh" + "p_" + alnum36[:35], "gh" + "x_" + alnum36, "xgh" + "p_" + alnum36},
		"github-fine-grained-pat": {"github" + "_pat_" + "short"},
		"gitlab-token":            {"gl" + "pat-" + "short", "gl" + "xyz-" + "abcdefghijklmnopqrstuv"},
		"anthropic-api-key":       {"sk-" + "ant-xyz", "sk-" + "ant-api03-short"},
		"openai-api-key":          {"sk-" + "1234", "task-" + "force-" + alnum40, "sk-" + alnum40 + "abcdefgh", "sk-" + "proj-" + "short", "dask-" + "proj-" + strings.Repeat("Zz9", 20)},
		"slack-token":             {"xo" + "xz-1234567890-abc", "xo" + "xb-short"},
		"slack-webhook":           {"hooks.slack.com/" + "services/short", "hooks.slack.com/" + "other/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"},
		"stripe-key":              {"sk" + "_live_" + "short", "pk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "sk" + "_prod_" + "4eC39HqLyjWDarjtT1zdp7dc"},
		"google-api-key":          {"AIza" + "SyA1b2C3", "xAIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"},
		"npm-token":               {"npm_" + alnum36[:20], "npm_" + alnum40},
		"pypi-token":              {"pypi-" + "abc", "pypi-" + "AgEIcHlwaS5vcmc" + "short"},
		"private-key":             {"-----BEGIN " + "PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEF\n-----END PUBLIC KEY-----", "-----BEGIN " + "CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		"jwt":                     {"eyJ" + "hbGciOiJIUzI1NiJ9", "eyJ" + "hbGciOiJIUzI1NiJ9.notjwt.x", "xeyJ" + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc"},
	}
)

// secretContexts put a token in the text the way prompts and answers do.
var secretContexts = []struct{ before, after string }{
	{"", ""},
	{"my token is ", " please"},
	{"export X=", "\n"},
	{"(", ")"},
	{"'", "'"},
	{"key=\"", "\";"},
}

func TestDefaultRules(t *testing.T) {
	s := Default()
	for _, r := range s.Rules() {
		if len(fakeTokens[r.Name]) == 0 || len(nearMisses[r.Name]) == 0 {
			t.Errorf("default rule %s has no positive or no negative test case", r.Name)
		}
	}
	for name, toks := range fakeTokens {
		for _, tok := range toks {
			for _, ctx := range secretContexts {
				text := ctx.before + tok + ctx.after
				if name == "aws-secret-access-key" {
					text = ctx.before + "aws_secret_access_key = " + tok + ctx.after
				}
				res := s.Request([]byte(text))
				if !fired(res, name) {
					t.Errorf("%s: did not fire on %q (hits %v)", name, text, res.Hits)
					continue
				}
				if bytes.Contains(res.Body, []byte(tok)) {
					t.Errorf("%s: %q masked as %q", name, text, res.Body)
				}
				if !strings.Contains(string(res.Body), "[MASKED:"+name+"]") {
					t.Errorf("%s: %q masked as %q, without its replacement", name, text, res.Body)
				}
				if !slices.ContainsFunc(res.Secrets, func(b []byte) bool { return strings.Contains(string(b), tok) || strings.Contains(tok, string(b)) }) {
					t.Errorf("%s: secrets %q lack %q", name, res.Secrets, tok)
				}
				// The same in an answer.
				if resp := s.Response([]byte(text)); !fired(resp, name) {
					t.Errorf("%s: did not fire on the answer %q", name, text)
				}
			}
		}
	}
	for name, misses := range nearMisses {
		for _, text := range misses {
			if res := s.Request([]byte(text)); fired(res, name) {
				t.Errorf("%s: fired on near miss %q: %q", name, text, res.Body)
			}
		}
	}
}

// TestDefaultRulesQuietOnProse checks that ordinary text and code pass.
func TestDefaultRulesQuietOnProse(t *testing.T) {
	prose := []string{
		"The task-based risk-assessment asked: is the desk-ready skill-set enough?",
		"Use AKIA-style keys only in examples; see https://docs.aws.amazon.com/IAM/.",
		"func main() { fmt.Println(\"eyJ is how base64 JSON starts\") }",
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
		"npm install sk-lite && pip install pypi-simple",
		"git checkout ghp_branch; glpat is a GitLab prefix",
	}
	s := Default()
	for _, p := range prose {
		if res := s.Request([]byte(p)); len(res.Hits) > 0 || !bytes.Equal(res.Body, []byte(p)) {
			t.Errorf("%q: hits %v, body %q", p, res.Hits, res.Body)
		}
	}
}

func fired(res Result, name string) bool {
	return slices.ContainsFunc(res.Hits, func(h Hit) bool { return h.Rule == name && h.Count > 0 })
}

func TestDefaultYAMLParses(t *testing.T) {
	s, err := Parse(DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != Default().Len() || s.Len() < 15 {
		t.Fatalf("default ruleset has %d rules", s.Len())
	}
	for _, r := range s.Rules() {
		if r.Description == "" {
			t.Errorf("%s has no description", r.Name)
		}
		if !slices.Equal(r.Scope, []string{ScopeRequest, ScopeResponse}) {
			t.Errorf("%s scope %v, want both", r.Name, r.Scope)
		}
	}
}

// TestPrivateKeyShapes checks the PEM rule on complete, truncated and
// mentioned-only blocks, and that prose after a truncated key survives.
func TestPrivateKeyShapes(t *testing.T) {
	s := Default()
	begin := "-----BEGIN " + "RSA PRIVATE KEY-----"
	tests := []struct{ in, want string }{
		{begin + "\nMIIEowIBAAKCAQEAxyz123456\nthen I stopped.", "[MASKED:private-key]\nthen I stopped."},
		{"A key starts with " + begin + " and more words follow.", "A key starts with [MASKED:private-key] and more words follow."},
		{begin + "\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nok", "[MASKED:private-key]\nok"},
		{`{"k":"` + begin + `\\nMIIEowIBAAKCAQEAxyz123456\\nZm9v"}`, `{"k":"[MASKED:private-key]\\nZm9v"}`},
	}
	for _, tt := range tests {
		if got := string(s.Request([]byte(tt.in)).Body); got != tt.want {
			t.Errorf("%q:\ngot  %q\nwant %q", tt.in, got, tt.want)
		}
	}
}
