// Package runnerenv renders the environment a runner needs to send its
// traffic through sessctl: the proxy address, the runner's credential under
// the names its clients read, and the CA under the names each TLS stack
// reads. `sessctl serve` prints it on first run; the README and the client
// tests follow the same list.
package runnerenv

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
)

// KeyVars are the variables a runner's credential is exported as: the
// OpenAI SDKs and curl scripts read OPENAI_API_KEY; the Codex CLI sends
// CODEX_API_KEY (and ignores OPENAI_API_KEY in `codex exec`).
var KeyVars = []string{"OPENAI_API_KEY", "CODEX_API_KEY"}

// CAVars are the variables that point a client at the CA file:
// SSL_CERT_FILE (OpenSSL, curl, Go, Python ssl, the Codex CLI),
// REQUESTS_CA_BUNDLE (Python requests), NODE_EXTRA_CA_CERTS (Node, added
// to its built-in roots) and CURL_CA_BUNDLE (curl, which prefers it to
// SSL_CERT_FILE when both are set, as in many corporate images).
var CAVars = []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"}

// Env is what a runner needs.
type Env struct {
	ProxyURL string // http://host:port of the explicit listener
	Token    string // the runner's credential (never the real key)
	CAFile   string // absolute path of the CA certificate (bundle)
	// ExtraKeyVars are more variables that carry Token, for clients of
	// other providers the gate intercepts (ANTHROPIC_API_KEY for Claude
	// Code and the Anthropic SDKs).
	ExtraKeyVars []string
}

// New builds the Env for a proxy whose listen address was configured as
// listen and is bound to bound (see URL). The CA path is made absolute, so
// the lines work from any directory.
func New(listen string, bound net.Addr, token, caFile string) (Env, error) {
	u, err := URL(listen, bound)
	if err != nil {
		return Env{}, err
	}
	abs, err := filepath.Abs(caFile)
	if err != nil {
		return Env{}, fmt.Errorf("runnerenv: CA file %s: %w", caFile, err)
	}
	return Env{ProxyURL: u, Token: token, CAFile: abs}, nil
}

// URL returns http://host:port for a listener configured as listen and
// bound to bound: the configured host, and the port bound (the one the
// kernel picked for a port 0). An unspecified host (":3128",
// "0.0.0.0:3128", "[::]:3128") is shown as 127.0.0.1: a client elsewhere
// uses this machine's name instead.
func URL(listen string, bound net.Addr) (string, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("runnerenv: listen address %q: %w", listen, err)
	}
	_, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "", fmt.Errorf("runnerenv: bound address %q: %w", bound, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// Vars returns the variables in the order they are printed, each as
// NAME=value (unquoted).
func (e Env) Vars() []string {
	vars := []string{"HTTPS_PROXY=" + e.ProxyURL}
	for _, k := range e.keyVars() {
		vars = append(vars, k+"="+e.Token)
	}
	for _, k := range CAVars {
		vars = append(vars, k+"="+e.CAFile)
	}
	return vars
}

// WriteExports writes the shell lines a runner pastes, each starting with
// indent:
//
//	export HTTPS_PROXY=http://127.0.0.1:3128
//	export OPENAI_API_KEY=sct_...
//	export CODEX_API_KEY=sct_...
//	export SSL_CERT_FILE=/abs/ca.crt REQUESTS_CA_BUNDLE=/abs/ca.crt NODE_EXTRA_CA_CERTS=/abs/ca.crt CURL_CA_BUNDLE=/abs/ca.crt
func (e Env) WriteExports(w io.Writer, indent string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%sexport HTTPS_PROXY=%s\n", indent, Quote(e.ProxyURL))
	for _, k := range e.keyVars() {
		fmt.Fprintf(&b, "%sexport %s=%s\n", indent, k, Quote(e.Token))
	}
	b.WriteString(indent + "export")
	for _, k := range CAVars {
		fmt.Fprintf(&b, " %s=%s", k, Quote(e.CAFile))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// keyVars are the variables that carry the runner's token: KeyVars, then
// ExtraKeyVars.
func (e Env) keyVars() []string {
	return append(append([]string(nil), KeyVars...), e.ExtraKeyVars...)
}

// Quote returns s as one POSIX shell word: unchanged when it holds only
// characters no shell treats specially, single-quoted otherwise.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/@+=%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
