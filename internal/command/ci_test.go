package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	yaml "go.yaml.in/yaml/v3"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/identity/oidctest"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// The tests in this file run the CI integrations as a CI system would:
// scripts/ci/setup.sh (what the GitHub Action action.yml runs) and the
// before_script of ci/gitlab/sessctl.gitlab-ci.yml, against a real
// `sessctl serve` that trusts a local OIDC issuer, which also stands in
// for GitHub's token service. Neither ever installs anything into this
// machine's trust store (install-ca: false): the bundle they write is what
// the job's later steps use.

// ciServe is a `sessctl serve` trusting one OIDC issuer.
type ciServe struct {
	cmd    *exec.Cmd
	stderr *testutil.Buffer
	listen string
	data   string
	caFile string // sessctl's CA
}

func startCIServe(t *testing.T, up *clientsUpstream, is *oidctest.Issuer) *ciServe {
	t.Helper()
	s := &ciServe{stderr: new(testutil.Buffer), listen: freeAddr(t), data: t.TempDir()}
	s.caFile = filepath.Join(s.data, "ca", "ca.crt")
	cfg := filepath.Join(t.TempDir(), "sessctl.yaml")
	body := fmt.Sprintf(`listen: %s
admin_listen: %s
data_dir: %s
upstream_addr: %s
upstream_ca_file: %s
oidc:
  - issuer: %s
    audience: sessctl
    ca_file: %s
`, s.listen, freeAddr(t), s.data, up.addr, up.caFile, is.URL(), is.CAFile(t))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(sessctlBin, "serve", "--config", cfg)
	s.cmd.Env = append(withoutProxyEnv(os.Environ()), "OPENAI_API_KEY="+realKey)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServe(t, s.cmd) })
	testutil.WaitFor(t, 60*time.Second, "sessctl serve to listen", func() bool {
		if s.cmd.ProcessState != nil {
			t.Fatalf("sessctl serve exited: %s", s.stderr)
		}
		return strings.Contains(s.stderr.String(), "sessctl serving")
	})
	return s
}

// githubTokenService stands in for GitHub's OIDC token service
// (ACTIONS_ID_TOKEN_REQUEST_URL): it answers a request carrying the job's
// request token with the ID token that sign makes for the audience asked.
func githubTokenService(t *testing.T, requestToken string, sign func(audience string) string) (url string, hits *atomic.Int32) {
	t.Helper()
	hits = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "bearer "+requestToken {
			http.Error(w, `{"message":"bad request token"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"count": 1, "value": sign(r.URL.Query().Get("audience"))})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/_apis/distributedtask/token?api-version=2.0", hits
}

// ghaRun is one run of scripts/ci/setup.sh in a fresh job.
type ghaRun struct {
	code              int
	stdout, stderr    string
	env, path, output string // $GITHUB_ENV, $GITHUB_PATH, $GITHUB_OUTPUT after the run
	temp              string // $RUNNER_TEMP
	vars              []string
}

func runSetup(t *testing.T, inputs map[string]string, extra ...string) *ghaRun {
	t.Helper()
	dir := t.TempDir()
	r := &ghaRun{temp: filepath.Join(dir, "temp")}
	if err := os.Mkdir(r.temp, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"GITHUB_ENV": "env", "GITHUB_PATH": "path", "GITHUB_OUTPUT": "output"}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "RUNNER_TEMP=" + r.temp, "GITHUB_ACTIONS=true"}
	for k, f := range files {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		env = append(env, k+"="+p)
	}
	for k, v := range inputs {
		env = append(env, "INPUT_"+k+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "scripts", "ci", "setup.sh"))
	cmd.Env = append(env, extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("setup.sh: %v", err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	r.env, r.path, r.output = read("env"), read("path"), read("output")
	r.vars = strings.Split(strings.TrimSuffix(r.env, "\n"), "\n")
	return r
}

func needCITools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "sh", "curl", "sed", "grep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the CI integration scripts need it", tool)
		}
	}
}

// chatThrough calls the chat API with curl in a later step's environment
// (only env and PATH) and returns the answer.
func chatThrough(t *testing.T, env []string, key string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `curl -sS --fail-with-body https://api.openai.com/v1/chat/completions `+
		`-H "Authorization: Bearer $`+key+`" -H 'Content-Type: application/json' `+
		`-d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi from ci"}]}'`)
	cmd.Dir = t.TempDir()
	cmd.Env = append(slices.Clone(env), "PATH="+os.Getenv("PATH"), "HOME="+cmd.Dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// forwardedBy returns the forwarded records of the log whose identity
// holds claim=value.
func forwardedBy(t *testing.T, s *ciServe, claim, value string) []store.Record {
	t.Helper()
	stopServe(t, s.cmd)
	out, code := run(t, sessctlBin, "sessions", "ls", "--db", filepath.Join(s.data, "sessions.db"), "--json", "--outcome", "forwarded")
	if code != 0 {
		t.Fatalf("sessions ls: exit %d: %s", code, out)
	}
	var recs []store.Record
	for line := range strings.Lines(out) {
		var rec store.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("sessions ls --json line %q: %v", line, err)
		}
		if rec.Path == "/v1/chat/completions" && rec.Identity.Claims[claim] == value {
			recs = append(recs, rec)
		}
	}
	return recs
}

func TestGitHubActionSetup(t *testing.T) {
	t.Parallel()
	needCITools(t)
	up := newClientsUpstream(t)
	is := oidctest.NewIssuer(t)
	kid := is.AddKey(t, jose.ES256)
	s := startCIServe(t, up, is)
	caPEM, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)

	const requestToken = "ghs-request-token-for-the-test"
	var lastOIDC atomic.Value
	tokenURL, hits := githubTokenService(t, requestToken, func(aud string) string {
		claims := is.GitHubClaims(time.Now())
		claims["aud"] = aud
		tok := is.Sign(t, kid, claims)
		lastOIDC.Store(tok)
		return tok
	})
	proxyURL := "http://" + s.listen
	oidcEnv := []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + tokenURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + requestToken}

	r := runSetup(t, map[string]string{"PROXY": proxyURL, "CA": string(caPEM), "INSTALL_CA": "false"}, oidcEnv...)
	if r.code != 0 {
		t.Fatalf("setup.sh: exit %d\nstdout:\n%s\nstderr:\n%s\nsessctl:\n%s", r.code, r.stdout, r.stderr, s.stderr)
	}
	if hits.Load() != 1 {
		t.Errorf("GitHub's token service was asked %d times, want 1", hits.Load())
	}

	// $GITHUB_ENV: exactly these lines, in this order.
	token := getenv(r.vars, "OPENAI_API_KEY")
	if !strings.HasPrefix(token, identity.SessionTokenPrefix) {
		t.Fatalf("OPENAI_API_KEY = %q, want a sessctl session token; GITHUB_ENV:\n%s", token, r.env)
	}
	bundle, ca := filepath.Join(r.temp, "sessctl-ca-bundle.pem"), filepath.Join(r.temp, "sessctl-ca.pem")
	noProxy := "localhost,127.0.0.1,::1,github.com,.github.com,.githubusercontent.com,.blob.core.windows.net"
	want := []string{
		"HTTPS_PROXY=" + proxyURL, "https_proxy=" + proxyURL, "NO_PROXY=" + noProxy, "no_proxy=" + noProxy,
		"SSL_CERT_FILE=" + bundle, "REQUESTS_CA_BUNDLE=" + bundle, "CURL_CA_BUNDLE=" + bundle, "NODE_EXTRA_CA_CERTS=" + ca,
		"OPENAI_API_KEY=" + token, "CODEX_API_KEY=" + token, "ANTHROPIC_API_KEY=" + token,
	}
	if !slices.Equal(r.vars, want) {
		t.Errorf("GITHUB_ENV:\n%s\nwant:\n%s", r.env, strings.Join(want, "\n"))
	}
	if got, want := r.path, filepath.Join(root, "scripts")+"\n"; got != want {
		t.Errorf("GITHUB_PATH = %q, want %q", got, want)
	}
	if got, want := r.output, "ca-bundle="+bundle+"\n"; got != want {
		t.Errorf("GITHUB_OUTPUT = %q, want %q", got, want)
	}

	// The token is masked before anything could print it, and printed
	// nowhere else; the OIDC token is printed nowhere.
	if n := strings.Count(r.stdout, token); n != 1 || !strings.Contains(r.stdout, "::add-mask::"+token+"\n") {
		t.Errorf("stdout holds the session token %d times, want once, in an ::add-mask:: line:\n%s", n, r.stdout)
	}
	oidcTok, _ := lastOIDC.Load().(string)
	for what, out := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
		if oidcTok == "" || strings.Contains(out, oidcTok) || strings.Contains(out, requestToken) {
			t.Errorf("%s shows the job's OIDC or request token:\n%s", what, out)
		}
	}
	if what, out := "stderr", r.stderr; strings.Contains(out, token) {
		t.Errorf("%s shows the session token:\n%s", what, out)
	}

	// The CA file and the bundle: the CA alone, and with the system roots.
	if b, _ := os.ReadFile(ca); !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(caPEM)) {
		t.Errorf("%s is not sessctl's CA", ca)
	}
	if b, _ := os.ReadFile(bundle); !bytes.Contains(b, bytes.TrimSpace(caPEM)) {
		t.Errorf("the bundle %s lacks sessctl's CA", bundle)
	}

	// A later step, with only what the action exported: every key works
	// through the proxy, as the job's identity.
	for _, key := range []string{"OPENAI_API_KEY", "CODEX_API_KEY", "ANTHROPIC_API_KEY"} {
		if out, err := chatThrough(t, r.vars, key); err != nil || !strings.Contains(out, upstreamAnswer) {
			t.Errorf("curl with $%s from GITHUB_ENV: %v: %s\nsessctl:\n%s", key, err, out, s.stderr)
		}
	}
	if recs := forwardedBy(t, s, "repository", "acme/docs"); len(recs) != 3 || recs[0].Identity.Method != "session_token" {
		t.Errorf("forwarded records of acme/docs: %+v, want 3 by session token", recs)
	}
}

// TestGitHubActionSetupRefusals checks that setup.sh stops with a GitHub
// error annotation, and exports no key, where it cannot do its job.
func TestGitHubActionSetupRefusals(t *testing.T) {
	t.Parallel()
	needCITools(t)
	up := newClientsUpstream(t)
	is := oidctest.NewIssuer(t)
	kid := is.AddKey(t, jose.ES256)
	other := oidctest.NewIssuer(t) // not trusted by sessctl
	otherKid := other.AddKey(t, jose.ES256)
	s := startCIServe(t, up, is)
	const requestToken = "ghs-request-token"
	good, _ := githubTokenService(t, requestToken, func(aud string) string {
		c := is.GitHubClaims(time.Now())
		c["aud"] = aud
		return is.Sign(t, kid, c)
	})
	untrusted, _ := githubTokenService(t, requestToken, func(aud string) string {
		c := other.GitHubClaims(time.Now())
		c["aud"] = aud
		return other.Sign(t, otherKid, c)
	})
	proxyURL := "http://" + s.listen
	notPEM := filepath.Join(t.TempDir(), "not-a-cert.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inputs := func(kv ...string) map[string]string {
		m := map[string]string{"PROXY": proxyURL, "CA": s.caFile, "INSTALL_CA": "false"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	oidc := func(url string) []string {
		return []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + requestToken}
	}
	for _, tc := range []struct {
		name      string
		inputs    map[string]string
		extra     []string
		code      int
		message   string // in the ::error:: line
		proxySet  bool   // HTTPS_PROXY and the CA variables were written
		keyExport bool
	}{
		{"no id-token permission", inputs(), nil, 1, "id-token: write", true, false},
		{"token false", inputs("TOKEN", "false"), nil, 0, "", true, false},
		{"ca by path", inputs(), oidc(good), 0, "", true, true},
		{"issuer sessctl does not trust", inputs(), oidc(untrusted), 1, "did not exchange", true, false},
		{"wrong audience", inputs("AUDIENCE", "not-sessctl"), oidc(good), 1, "did not exchange", true, false},
		{"proxy with a newline", inputs("PROXY", proxyURL+"\nOPENAI_API_KEY=evil"), oidc(good), 1, "input proxy", false, false},
		{"no proxy", inputs("PROXY", ""), oidc(good), 1, "input proxy is required", false, false},
		{"no-proxy lets the API bypass", inputs("NO_PROXY", "localhost,api.openai.com"), oidc(good), 1, "bypass", false, false},
		{"no-proxy everything", inputs("NO_PROXY", "*"), oidc(good), 1, "bypass", false, false},
		{"no ca", inputs("CA", ""), oidc(good), 1, "input ca is required", false, false},
		{"ca not a certificate", inputs("CA", notPEM), oidc(good), 1, "no PEM certificate", false, false},
		{"install-ca not a boolean", inputs("INSTALL_CA", "yes"), oidc(good), 1, "install-ca", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runSetup(t, tc.inputs, tc.extra...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.message != "" && (!strings.Contains(r.stdout, "::error title=sessctl::") || !strings.Contains(r.stdout, tc.message)) {
				t.Errorf("stdout lacks an error annotation with %q:\n%s", tc.message, r.stdout)
			}
			if got := getenv(r.vars, "HTTPS_PROXY") == proxyURL && getenv(r.vars, "SSL_CERT_FILE") != ""; got != tc.proxySet {
				t.Errorf("proxy and CA exported = %v, want %v; GITHUB_ENV:\n%s", got, tc.proxySet, r.env)
			}
			key := getenv(r.vars, "OPENAI_API_KEY")
			if (key != "") != tc.keyExport {
				t.Errorf("OPENAI_API_KEY exported = %v, want %v; GITHUB_ENV:\n%s", key != "", tc.keyExport, r.env)
			}
			if strings.Contains(r.env, "evil") {
				t.Errorf("an input added a line to GITHUB_ENV:\n%s", r.env)
			}
			if tc.keyExport {
				if out, err := chatThrough(t, r.vars, "OPENAI_API_KEY"); err != nil || !strings.Contains(out, upstreamAnswer) {
					t.Errorf("curl with the exported key: %v: %s", err, out)
				}
			}
		})
	}
}

// gitlabTemplate is the part of ci/gitlab/sessctl.gitlab-ci.yml a job
// extends.
type gitlabTemplate struct {
	IDTokens map[string]struct {
		Aud string `yaml:"aud"`
	} `yaml:"id_tokens"`
	Variables    map[string]string `yaml:"variables"`
	BeforeScript []string          `yaml:"before_script"`
}

func loadGitLabTemplate(t *testing.T) gitlabTemplate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "ci", "gitlab", "sessctl.gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]gitlabTemplate
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("ci/gitlab/sessctl.gitlab-ci.yml: %v", err)
	}
	tmpl, ok := doc[".sessctl"]
	if !ok || len(tmpl.BeforeScript) == 0 {
		t.Fatalf("ci/gitlab/sessctl.gitlab-ci.yml has no .sessctl job with a before_script")
	}
	return tmpl
}

// TestGitLabTemplate runs the template's before_script in sh, as a GitLab
// runner does with the job's script after it, with a GitLab-shaped ID
// token in the variable the template's id_tokens names.
func TestGitLabTemplate(t *testing.T) {
	t.Parallel()
	needCITools(t)
	tmpl := loadGitLabTemplate(t)
	idTok, ok := tmpl.IDTokens["SESSCTL_ID_TOKEN"]
	if !ok || idTok.Aud != "sessctl" {
		t.Fatalf("id_tokens = %+v, want SESSCTL_ID_TOKEN with aud sessctl", tmpl.IDTokens)
	}
	up := newClientsUpstream(t)
	is := oidctest.NewIssuer(t)
	kid := is.AddKey(t, jose.ES256)
	s := startCIServe(t, up, is)
	now := time.Now()
	gitlabToken := is.Sign(t, kid, map[string]any{
		"iss": is.URL(), "aud": idTok.Aud, "sub": "project_path:acme/infra:ref_type:branch:ref:main",
		"project_path": "acme/infra", "project_id": "42", "namespace_path": "acme", "pipeline_id": "991",
		"pipeline_source": "push", "job_id": "5150", "ref": "main", "ref_type": "branch", "ref_protected": "true",
		"user_login": "octo", "nbf": now.Add(-5 * time.Second).Unix(), "iat": now.Add(-5 * time.Second).Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	})
	caPEM, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	script := strings.Join(tmpl.BeforeScript, "\n")
	jobVars := func(ca string, withToken bool) []string {
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir(),
			"SESSCTL_PROXY=http://" + s.listen, "SESSCTL_CA=" + ca, "SESSCTL_INSTALL_CA=false"}
		for k, v := range tmpl.Variables {
			if k != "SESSCTL_INSTALL_CA" {
				env = append(env, k+"="+v)
			}
		}
		if withToken {
			env = append(env, "SESSCTL_ID_TOKEN="+gitlabToken)
		}
		return env
	}
	job := func(env []string) (stdout, stderr string, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// The job's script: what the environment now holds.
		cmd := exec.CommandContext(ctx, "sh", "-c", script+"\nenv")
		cmd.Dir, cmd.Env = t.TempDir(), env
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}

	for _, tc := range []struct{ name, ca string }{{"ca as a file variable", s.caFile}, {"ca as PEM text", string(caPEM)}} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := job(jobVars(tc.ca, true))
			if err != nil {
				t.Fatalf("before_script: %v\nstdout:\n%s\nstderr:\n%s\nsessctl:\n%s", err, out, errOut, s.stderr)
			}
			vars := strings.Split(out, "\n")
			token := getenv(vars, "OPENAI_API_KEY")
			if !strings.HasPrefix(token, identity.SessionTokenPrefix) || getenv(vars, "CODEX_API_KEY") != token || getenv(vars, "ANTHROPIC_API_KEY") != token {
				t.Fatalf("the job's keys: %q, want one sessctl session token in all three", token)
			}
			if strings.Count(out, token) != 3 || strings.Contains(errOut, token) {
				t.Errorf("the session token is printed beyond the job's environment:\n%s\n%s", out, errOut)
			}
			for _, v := range []string{"HTTPS_PROXY", "https_proxy"} {
				if getenv(vars, v) != "http://"+s.listen {
					t.Errorf("%s = %q", v, getenv(vars, v))
				}
			}
			if getenv(vars, "NO_PROXY") != tmpl.Variables["SESSCTL_NO_PROXY"] {
				t.Errorf("NO_PROXY = %q, want the template's %q", getenv(vars, "NO_PROXY"), tmpl.Variables["SESSCTL_NO_PROXY"])
			}
			bundle := getenv(vars, "SSL_CERT_FILE")
			if b, _ := os.ReadFile(bundle); !bytes.Contains(b, bytes.TrimSpace(caPEM)) {
				t.Errorf("SSL_CERT_FILE=%s lacks sessctl's CA", bundle)
			}
			if getenv(vars, "REQUESTS_CA_BUNDLE") != bundle || getenv(vars, "CURL_CA_BUNDLE") != bundle {
				t.Errorf("REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE differ from SSL_CERT_FILE")
			}
			if b, _ := os.ReadFile(getenv(vars, "NODE_EXTRA_CA_CERTS")); !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(caPEM)) {
				t.Errorf("NODE_EXTRA_CA_CERTS is not sessctl's CA")
			}
			exported := slices.DeleteFunc(vars, func(kv string) bool {
				k, _, _ := strings.Cut(kv, "=")
				return !slices.Contains([]string{"HTTPS_PROXY", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "OPENAI_API_KEY"}, k)
			})
			if out, err := chatThrough(t, exported, "OPENAI_API_KEY"); err != nil || !strings.Contains(out, upstreamAnswer) {
				t.Errorf("curl with the job's OPENAI_API_KEY: %v: %s\nsessctl:\n%s", err, out, s.stderr)
			}
		})
	}

	t.Run("no id token", func(t *testing.T) {
		out, errOut, err := job(jobVars(s.caFile, false))
		if err == nil || !strings.Contains(errOut, "SESSCTL_ID_TOKEN") || strings.Contains(out, "OPENAI_API_KEY=") {
			t.Errorf("before_script without an ID token: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		}
	})
	t.Run("untrusted id token", func(t *testing.T) {
		env := jobVars(s.caFile, false)
		env = append(env, "SESSCTL_ID_TOKEN="+oidctest.Unsigned(map[string]any{"iss": is.URL(), "aud": "sessctl", "sub": "x"}))
		out, errOut, err := job(env)
		if err == nil || !strings.Contains(errOut, "sessctl refused the exchange") || strings.Contains(out, "OPENAI_API_KEY=") {
			t.Errorf("before_script with an unsigned ID token: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		}
	})

	if recs := forwardedBy(t, s, "project_path", "acme/infra"); len(recs) != 2 {
		t.Errorf("forwarded records of acme/infra: %d, want 2 (one for each form of the CA)", len(recs))
	}
}

// TestActionYAML checks that action.yml stays a thin, composite wrapper
// around scripts/ci/setup.sh: no other action used, inputs reach the
// script only through the environment (never expanded into its text), and
// every input is one the script reads.
func TestActionYAML(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var action struct {
		Name   string `yaml:"name"`
		Inputs map[string]struct {
			Required bool   `yaml:"required"`
			Default  string `yaml:"default"`
		} `yaml:"inputs"`
		Runs struct {
			Using string `yaml:"using"`
			Steps []struct {
				ID    string            `yaml:"id"`
				Uses  string            `yaml:"uses"`
				Shell string            `yaml:"shell"`
				Run   string            `yaml:"run"`
				Env   map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"runs"`
	}
	if err := yaml.Unmarshal(b, &action); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if action.Runs.Using != "composite" || len(action.Runs.Steps) != 1 {
		t.Fatalf("runs: using %q with %d steps, want one composite step", action.Runs.Using, len(action.Runs.Steps))
	}
	for _, in := range []string{"proxy", "ca"} {
		if !action.Inputs[in].Required {
			t.Errorf("input %s is not required", in)
		}
	}
	step := action.Runs.Steps[0]
	if step.Uses != "" || step.Shell != "bash" || strings.Contains(step.Run, "${{") ||
		!strings.Contains(step.Run, "$GITHUB_ACTION_PATH/scripts/ci/setup.sh") {
		t.Errorf("the step = %+v, want bash running $GITHUB_ACTION_PATH/scripts/ci/setup.sh with no expression in its text", step)
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts", "ci", "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range action.Inputs {
		env := "INPUT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if got, want := step.Env[env], "${{ inputs."+name+" }}"; got != want {
			t.Errorf("env %s = %q, want %q", env, got, want)
		}
		if !bytes.Contains(script, []byte("${"+env+":-")) {
			t.Errorf("scripts/ci/setup.sh does not read %s", env)
		}
	}
	if len(step.Env) != len(action.Inputs) {
		t.Errorf("the step's env has %d entries for %d inputs: %v", len(step.Env), len(action.Inputs), step.Env)
	}
}

// privateTrustStore prepares a mount namespace in which the system trust
// store (/usr/local/share/ca-certificates, /etc/ssl/certs) is a private copy,
// or skips the test where that cannot be made (not root, no unshare, not a
// Debian-style store). Run runs script there with env (plus D, the work
// directory); after it, D/store.txt lists the store and
// D/system-bundle.pem is the system bundle, as seen inside.
type privateTrustStore struct{ dir string }

func newPrivateTrustStore(t *testing.T) *privateTrustStore {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make a mount namespace with a private trust store")
	}
	for _, tool := range []string{"unshare", "mount", "mountpoint", "update-ca-certificates", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: cannot test installing into a Debian trust store", tool)
		}
	}
	p := &privateTrustStore{dir: t.TempDir()}
	for sys, sub := range map[string]string{"/usr/local/share/ca-certificates": "local", "/etc/ssl/certs": "certs"} {
		if fi, err := os.Stat(sys); err != nil || !fi.IsDir() {
			t.Skipf("%s is not a directory: not a Debian-style trust store", sys)
		}
		if err := os.Mkdir(filepath.Join(p.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", sys+"/.", filepath.Join(p.dir, sub)).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v: %s", sys, err, out)
		}
	}
	return p
}

func (p *privateTrustStore) run(t *testing.T, script string, env []string) (string, error) {
	t.Helper()
	// The copies are mounted over the real store inside the namespace
	// only; nothing runs unless both are mounts.
	wrapped := `set -eu
mount --bind "$D/local" /usr/local/share/ca-certificates || exit 97
mount --bind "$D/certs" /etc/ssl/certs || exit 97
mountpoint -q /usr/local/share/ca-certificates && mountpoint -q /etc/ssl/certs || exit 97
set +eu
( ` + script + `
)
rc=$?
cat /etc/ssl/certs/ca-certificates.crt > "$D/system-bundle.pem"
ls /usr/local/share/ca-certificates > "$D/store.txt"
exit $rc
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", wrapped)
	cmd.Env = append(slices.Clone(env), "D="+p.dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 97 || err != nil && strings.Contains(string(out), "unshare failed") {
		t.Skipf("no private mount namespace here: %s", out)
	}
	return string(out), err
}

// check fails the test unless the CA is in the private store's bundle and
// nowhere in this machine's own store.
func (p *privateTrustStore) check(t *testing.T, caPEM []byte, file, out string) {
	t.Helper()
	ca := bytes.TrimSpace(caPEM)
	if store, _ := os.ReadFile(filepath.Join(p.dir, "store.txt")); !strings.Contains(string(store), file) {
		t.Errorf("the trust store holds %q, want %s\n%s", store, file, out)
	}
	if b, _ := os.ReadFile(filepath.Join(p.dir, "system-bundle.pem")); !bytes.Contains(b, ca) {
		t.Errorf("the system bundle lacks sessctl's CA after install\n%s", out)
	}
	if b, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); bytes.Contains(b, ca) {
		t.Fatalf("sessctl's CA reached this machine's own trust store")
	}
	if _, err := os.Stat(filepath.Join("/usr/local/share/ca-certificates", file)); err == nil {
		t.Fatalf("%s was written into this machine's own trust store", file)
	}
}

// TestGitHubActionInstallsCA runs setup.sh with install-ca (the default)
// in a mount namespace whose system trust store is a private copy: the CA
// lands in the trust store and the system bundle, as on a runner, and this
// machine's own store is never touched.
func TestGitHubActionInstallsCA(t *testing.T) {
	t.Parallel()
	needCITools(t)
	ts := newPrivateTrustStore(t)
	up := newClientsUpstream(t)
	is := oidctest.NewIssuer(t)
	kid := is.AddKey(t, jose.ES256)
	s := startCIServe(t, up, is)
	tokenURL, _ := githubTokenService(t, "req-token", func(aud string) string {
		c := is.GitHubClaims(time.Now())
		c["aud"] = aud
		return is.Sign(t, kid, c)
	})
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "temp"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"env", "path"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := ts.run(t, `bash "$SETUP"`, []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"SETUP=" + filepath.Join(repoRoot(t), "scripts", "ci", "setup.sh"),
		"GITHUB_ENV=" + filepath.Join(dir, "env"), "GITHUB_PATH=" + filepath.Join(dir, "path"),
		"RUNNER_TEMP=" + filepath.Join(dir, "temp"),
		"INPUT_PROXY=http://" + s.listen, "INPUT_CA=" + s.caFile,
		"ACTIONS_ID_TOKEN_REQUEST_URL=" + tokenURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN=req-token",
	})
	if err != nil {
		t.Fatalf("setup.sh in a mount namespace: %v\n%s", err, out)
	}
	caPEM, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	ts.check(t, caPEM, "sessctl-1.crt", out)
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.Split(strings.TrimSpace(string(env)), "\n")
	if b, _ := os.ReadFile(getenv(vars, "SSL_CERT_FILE")); !bytes.Contains(b, bytes.TrimSpace(caPEM)) {
		t.Errorf("SSL_CERT_FILE's bundle lacks sessctl's CA")
	}
	if out, err := chatThrough(t, vars, "OPENAI_API_KEY"); err != nil || !strings.Contains(out, upstreamAnswer) {
		t.Errorf("curl with the exported key: %v: %s", err, out)
	}
}

// TestGitLabTemplateInstallsCA runs the template's before_script with
// SESSCTL_INSTALL_CA "true" (its default) in a mount namespace whose
// system trust store is a private copy.
func TestGitLabTemplateInstallsCA(t *testing.T) {
	t.Parallel()
	needCITools(t)
	ts := newPrivateTrustStore(t)
	tmpl := loadGitLabTemplate(t)
	if tmpl.Variables["SESSCTL_INSTALL_CA"] != "true" {
		t.Errorf("SESSCTL_INSTALL_CA defaults to %q, want \"true\"", tmpl.Variables["SESSCTL_INSTALL_CA"])
	}
	up := newClientsUpstream(t)
	is := oidctest.NewIssuer(t)
	kid := is.AddKey(t, jose.ES256)
	s := startCIServe(t, up, is)
	now := time.Now()
	idToken := is.Sign(t, kid, map[string]any{
		"iss": is.URL(), "aud": "sessctl", "sub": "project_path:acme/infra:ref_type:branch:ref:main",
		"project_path": "acme/infra", "nbf": now.Add(-5 * time.Second).Unix(), "iat": now.Add(-5 * time.Second).Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	})
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir(),
		"SESSCTL_PROXY=http://" + s.listen, "SESSCTL_CA=" + s.caFile, "SESSCTL_ID_TOKEN=" + idToken}
	for k, v := range tmpl.Variables {
		env = append(env, k+"="+v)
	}
	// The job's script after the before_script: the key works from the
	// system store alone (curl with CURL_CA_BUNDLE and SSL_CERT_FILE unset).
	job := strings.Join(tmpl.BeforeScript, "\n") + `
unset CURL_CA_BUNDLE SSL_CERT_FILE REQUESTS_CA_BUNDLE
curl -sS --fail-with-body https://api.openai.com/v1/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY" \
  -H 'Content-Type: application/json' -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}'`
	out, err := ts.run(t, job, env)
	if err != nil || !strings.Contains(out, upstreamAnswer) {
		t.Fatalf("before_script and curl in a mount namespace: %v\n%s\nsessctl:\n%s", err, out, s.stderr)
	}
	caPEM, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	ts.check(t, caPEM, "sessctl.crt", out)
}
