// Package config loads sessctl's configuration: embedded defaults, then an
// optional YAML file, then command-line flags and SESSCTL_<KEY> environment
// variables (the caller applies those through Set). Every key documented in
// sessctl.example.yaml is a field of Config.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/sessctl/sessctl/identity"
)

// Config is the whole configuration of `sessctl serve`.
type Config struct {
	Listen            string `yaml:"listen"`
	AdminListen       string `yaml:"admin_listen"`
	TransparentListen string `yaml:"transparent_listen"`
	// TransparentDstCheck is "resolve" (the original destination must be
	// among the SNI name's addresses) or "none" (trust SNI).
	TransparentDstCheck string `yaml:"transparent_dst_check"`
	DataDir             string `yaml:"data_dir"`
	CADir               string `yaml:"ca_dir"`
	DB                  string `yaml:"db"`
	RulesFile           string `yaml:"rules_file"`
	UpstreamKeyFile     string `yaml:"upstream_key_file"`
	// UpstreamKeys names further real keys (name -> file) that a policy can pick.
	UpstreamKeys map[string]string `yaml:"upstream_keys"`
	// UpstreamCAFile adds CA certificates to trust for upstream TLS (tests,
	// private endpoints). The system roots and SSL_CERT_FILE stay trusted.
	UpstreamCAFile string `yaml:"upstream_ca_file"`
	// UpstreamAddr, when set, is the host:port every intercepted host is
	// dialled at (TLS still verifies the intercepted host name). For tests and
	// for private endpoints.
	UpstreamAddr string   `yaml:"upstream_addr"`
	Intercept    []string `yaml:"intercept"`
	// ConnectPorts are the ports runners may CONNECT to (default 443).
	ConnectPorts []string `yaml:"connect_ports"`
	Passthrough  []string `yaml:"passthrough"`
	Runners      []Runner `yaml:"runners"`
	// RunnersFile holds further runners (written by `sessctl token new`).
	RunnersFile string `yaml:"runners_file"`
	// AdminTokens authenticate the admin API and UI; the name is recorded as
	// the approver of each decision.
	AdminTokens []Runner `yaml:"admin_tokens"`
	// AdminTokensFile holds further admin tokens (the first run writes
	// one here), in the runners file format.
	AdminTokensFile string `yaml:"admin_tokens_file"`
	// MaxBody bounds a request or non-streamed answer body, in bytes.
	MaxBody int64 `yaml:"max_body"`
	// RecordBodyLimit bounds how much of a streamed answer is kept in the
	// record; the rest is relayed but not stored (the record says so).
	RecordBodyLimit int64 `yaml:"record_body_limit"`
	// MaxInflight bounds the exchanges one identity may have in progress.
	MaxInflight int64 `yaml:"max_inflight"`
	// StreamHoldback bounds the text held back by the stream masker.
	StreamHoldback int `yaml:"stream_holdback"`
	// WSMaxMessage bounds one WebSocket message, in bytes.
	WSMaxMessage int64 `yaml:"ws_max_message"`

	CheckpointEvery    int      `yaml:"checkpoint_every"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	CheckpointFile     string   `yaml:"checkpoint_file"`
	// CheckpointURL receives each signed checkpoint as an HTTP POST, so a
	// copy lives where the proxy's host cannot rewrite it.
	CheckpointURL string `yaml:"checkpoint_url"`
	Retention     struct {
		Bodies Duration `yaml:"bodies"`
	} `yaml:"retention"`

	ApprovalTimeout Duration `yaml:"approval_timeout"`
	ApprovalMode    string   `yaml:"approval_mode"`
	ApprovalWebhook string   `yaml:"approval_webhook"`
	SessionTokenTTL Duration `yaml:"session_token_ttl"`
	OIDC            []OIDC   `yaml:"oidc"`
	Policies        []Policy `yaml:"policies"`

	// CentralDSN is the fleet's PostgreSQL database (a connection string
	// or URL). With it, the replica ships its log there (package central).
	CentralDSN string `yaml:"central_dsn" usage:"PostgreSQL DSN of the fleet: ship the log there (secret: prefer the environment)"`
	// CentralOrigins pins the checkpoint key of each replica's log (origin
	// -> note verifier key) for verify --central.
	CentralOrigins map[string]string `yaml:"central_origins"`
	// SessionKeyFile is the key that signs session tokens; the same file
	// on every replica makes a token exchanged on one accepted by all.
	// Empty: DATA_DIR/session.key, created on first run.
	SessionKeyFile string `yaml:"session_key_file" usage:"key signing session tokens, shared by a fleet's replicas (default DATA_DIR/session.key, created)"`

	LeafValidity Duration `yaml:"leaf_validity"`
	LogLevel     string   `yaml:"log_level"`
	LogFormat    string   `yaml:"log_format"`
}

// Runner is a static credential: a runner token or an admin token, given
// as its SHA-256 (token_sha256) or in clear (token).
type Runner = identity.Runner

// OIDC configures one trusted CI token issuer.
type OIDC = identity.OIDCIssuer

// Policy is one entry of the ordered policies list; the first match wins.
type Policy = identity.Policy

// Duration is a time.Duration that reads "90s", "6h" or "90d" from YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a Go duration, with "d" accepted for days.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return v, nil
}

// Default returns the embedded defaults: a proxy on loopback that
// intercepts api.openai.com and keeps its state under ./data.
func Default() *Config {
	return &Config{
		Listen:              "127.0.0.1:3128",
		AdminListen:         "127.0.0.1:9090",
		DataDir:             "./data",
		Intercept:           []string{"api.openai.com"},
		MaxBody:             32 << 20,
		RecordBodyLimit:     8 << 20,
		StreamHoldback:      256,
		MaxInflight:         64,
		WSMaxMessage:        32 << 20,
		CheckpointEvery:     1000,
		CheckpointInterval:  Duration(10 * time.Second),
		ApprovalTimeout:     Duration(5 * time.Minute),
		ApprovalMode:        "hold",
		TransparentDstCheck: "resolve",
		SessionTokenTTL:     Duration(6 * time.Hour),
		LeafValidity:        Duration(24 * time.Hour),
		LogLevel:            "info",
		LogFormat:           "text",
	}
}

// Load reads the YAML file at path over the defaults. Unknown keys and
// values of the wrong type are errors naming the line.
func Load(path string) (*Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.decode(data); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) decode(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Keys lists the scalar and list keys that can be set with Set, that is
// from a flag or an environment variable, with a usage line each.
func Keys() []Key {
	ks := make([]Key, 0, len(setters))
	for name, s := range setters {
		ks = append(ks, Key{Name: name, Usage: s.usage, List: s.list})
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name })
	return ks
}

// Key describes one key settable from a flag or the environment.
type Key struct {
	Name  string
	Usage string
	// List keys take several values (repeat the flag, or separate the
	// environment value with commas).
	List bool
}

type setter struct {
	usage string
	list  bool
	set   func(c *Config, v []string) error
}

func str(p func(*Config) *string) func(*Config, []string) error {
	return func(c *Config, v []string) error { *p(c) = v[0]; return nil }
}

func list(p func(*Config) *[]string) func(*Config, []string) error {
	return func(c *Config, v []string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *Duration) func(*Config, []string) error {
	return func(c *Config, v []string) error {
		d, err := ParseDuration(v[0])
		*p(c) = Duration(d)
		return err
	}
}

func integer(p func(*Config) *int64) func(*Config, []string) error {
	return func(c *Config, v []string) error {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil {
			return fmt.Errorf("invalid number %q", v[0])
		}
		*p(c) = n
		return nil
	}
}

var setters = map[string]setter{
	"listen":                {"explicit proxy listen address (HTTPS_PROXY)", false, str(func(c *Config) *string { return &c.Listen })},
	"admin_listen":          {"admin listener: /healthz, /metrics, API and UI", false, str(func(c *Config) *string { return &c.AdminListen })},
	"transparent_listen":    {"transparent listener for firewall-redirected port 443", false, str(func(c *Config) *string { return &c.TransparentListen })},
	"transparent_dst_check": {"resolve (original destination must match the SNI name's addresses) or none", false, str(func(c *Config) *string { return &c.TransparentDstCheck })},
	"data_dir":              {"state directory (CA, database, keys)", false, str(func(c *Config) *string { return &c.DataDir })},
	"ca_dir":                {"CA directory (default DATA_DIR/ca)", false, str(func(c *Config) *string { return &c.CADir })},
	"db":                    {"session database (default DATA_DIR/sessions.db)", false, str(func(c *Config) *string { return &c.DB })},
	"rules_file":            {"rules file (default: the built-in secret ruleset)", false, str(func(c *Config) *string { return &c.RulesFile })},
	"upstream_key_file":     {"file holding the real API key (else env OPENAI_API_KEY)", false, str(func(c *Config) *string { return &c.UpstreamKeyFile })},
	"upstream_ca_file":      {"extra CA certificates trusted for upstream TLS", false, str(func(c *Config) *string { return &c.UpstreamCAFile })},
	"upstream_addr":         {"dial every intercepted host at this host:port (tests, private endpoints)", false, str(func(c *Config) *string { return &c.UpstreamAddr })},
	"runners_file":          {"runners file written by `sessctl token new` (default DATA_DIR/runners.yaml)", false, str(func(c *Config) *string { return &c.RunnersFile })},
	"checkpoint_file":       {"append each signed checkpoint to this file", false, str(func(c *Config) *string { return &c.CheckpointFile })},
	"checkpoint_url":        {"POST each signed checkpoint to this URL", false, str(func(c *Config) *string { return &c.CheckpointURL })},
	"approval_mode":         {"hold (keep the request open) or ticket (refuse now, pass on retry once approved)", false, str(func(c *Config) *string { return &c.ApprovalMode })},
	"approval_webhook":      {"URL notified of each held request", false, str(func(c *Config) *string { return &c.ApprovalWebhook })},
	"central_dsn":           {"PostgreSQL DSN of the fleet: ship the log there (secret: prefer the environment)", false, str(func(c *Config) *string { return &c.CentralDSN })},
	"session_key_file":      {"key signing session tokens, shared by a fleet's replicas (default DATA_DIR/session.key, created)", false, str(func(c *Config) *string { return &c.SessionKeyFile })},
	"log_level":             {"debug, info, warn or error", false, str(func(c *Config) *string { return &c.LogLevel })},
	"log_format":            {"text or json", false, str(func(c *Config) *string { return &c.LogFormat })},
	"intercept":             {"hosts to intercept (MITM)", true, list(func(c *Config) *[]string { return &c.Intercept })},
	"passthrough":           {"hosts tunnelled without decryption", true, list(func(c *Config) *[]string { return &c.Passthrough })},
	"runners": {"runners as NAME:TOKEN_SHA256", true, func(c *Config, v []string) error {
		c.Runners = c.Runners[:0]
		for _, s := range v {
			name, sum, ok := strings.Cut(s, ":")
			if !ok {
				return fmt.Errorf("runner %q: want NAME:TOKEN_SHA256", s)
			}
			c.Runners = append(c.Runners, Runner{Name: name, TokenSHA256: sum})
		}
		return nil
	}},
	"max_body":            {"largest request or non-streamed answer body, bytes", false, integer(func(c *Config) *int64 { return &c.MaxBody })},
	"record_body_limit":   {"largest streamed answer kept in a record, bytes", false, integer(func(c *Config) *int64 { return &c.RecordBodyLimit })},
	"max_inflight":        {"exchanges one identity may have in progress at once", false, integer(func(c *Config) *int64 { return &c.MaxInflight })},
	"ws_max_message":      {"largest WebSocket message, bytes", false, integer(func(c *Config) *int64 { return &c.WSMaxMessage })},
	"checkpoint_interval": {"sign a checkpoint at least this often", false, dur(func(c *Config) *Duration { return &c.CheckpointInterval })},
	"approval_timeout":    {"how long a held request waits for a decision", false, dur(func(c *Config) *Duration { return &c.ApprovalTimeout })},
	"session_token_ttl":   {"lifetime of session tokens exchanged for OIDC tokens", false, dur(func(c *Config) *Duration { return &c.SessionTokenTTL })},
	"leaf_validity":       {"lifetime of minted leaf certificates", false, dur(func(c *Config) *Duration { return &c.LeafValidity })},
}

// Set applies a value given as a flag or environment variable to key.
func (c *Config) Set(key string, values []string) error {
	s, ok := setters[key]
	if !ok {
		return fmt.Errorf("config: unknown key %q", key)
	}
	if len(values) == 0 {
		return fmt.Errorf("config: %s: no value", key)
	}
	if err := s.set(c, values); err != nil {
		return fmt.Errorf("config: %s: %w", key, err)
	}
	return nil
}

// Resolve fills the paths derived from DataDir and checks every value. It
// returns the first problem, naming the key.
func (c *Config) Resolve() error {
	if c.DataDir == "" {
		return errors.New("config: data_dir: must not be empty")
	}
	def := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(c.DataDir, name)
		}
	}
	def(&c.CADir, "ca")
	def(&c.DB, "sessions.db")
	def(&c.RunnersFile, "runners.yaml")
	def(&c.AdminTokensFile, "admin_tokens.yaml")
	for _, a := range []struct{ key, v string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}, {"transparent_listen", c.TransparentListen}, {"upstream_addr", c.UpstreamAddr}} {
		if a.v == "" && a.key != "listen" && a.key != "admin_listen" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("config: %s: %q is not host:port", a.key, a.v)
		}
	}
	if len(c.Intercept) == 0 {
		return errors.New("config: intercept: at least one host is needed")
	}
	for _, h := range append(append([]string{}, c.Intercept...), c.Passthrough...) {
		if h == "" || strings.ContainsAny(h, "/: ") {
			return fmt.Errorf("config: host %q: want a bare host name", h)
		}
	}
	for _, h := range c.Passthrough {
		for _, i := range c.Intercept {
			if strings.EqualFold(h, i) {
				return fmt.Errorf("config: %s is both intercepted and passed through", h)
			}
		}
	}
	for _, p := range c.ConnectPorts {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("config: connect_ports: %q is not a port", p)
		}
	}
	if c.MaxInflight <= 0 || c.MaxInflight > 1<<20 {
		return fmt.Errorf("config: max_inflight: %d out of range 1..1048576", c.MaxInflight)
	}
	if c.MaxBody <= 0 || c.RecordBodyLimit < 0 || c.WSMaxMessage <= 0 {
		return errors.New("config: max_body and ws_max_message must be positive, record_body_limit not negative")
	}
	if c.StreamHoldback < 16 || c.StreamHoldback > 1<<20 {
		return fmt.Errorf("config: stream_holdback: %d out of range 16..1048576", c.StreamHoldback)
	}
	switch c.TransparentDstCheck {
	case "resolve", "none":
	default:
		return fmt.Errorf("config: transparent_dst_check: %q is neither resolve nor none", c.TransparentDstCheck)
	}
	switch c.ApprovalMode {
	case "hold", "ticket":
	default:
		return fmt.Errorf("config: approval_mode: %q is neither hold nor ticket", c.ApprovalMode)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("config: log_format: %q is neither text nor json", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	for i, r := range append(append([]Runner{}, c.Runners...), c.AdminTokens...) {
		if err := checkRunner(r); err != nil {
			return fmt.Errorf("config: runners/admin_tokens entry %d: %w", i+1, err)
		}
	}
	if err := identity.ValidatePolicies(c.Policies); err != nil {
		return fmt.Errorf("config: policies: %w", err)
	}
	if c.CheckpointEvery <= 0 || c.CheckpointInterval <= 0 {
		return errors.New("config: checkpoint_every and checkpoint_interval must be positive")
	}
	for origin, key := range c.CentralOrigins {
		if err := CheckOriginKey(origin, key); err != nil {
			return fmt.Errorf("config: central_origins: %w", err)
		}
	}
	return nil
}

// CheckOriginKey checks that key is a note verifier key named origin, as
// the key of a sessctl log is.
func CheckOriginKey(origin, key string) error {
	if _, err := note.NewVerifier(key); err != nil {
		return fmt.Errorf("%s: not a note verifier key: %w", origin, err)
	}
	if name, _, _ := strings.Cut(key, "+"); name != origin {
		return fmt.Errorf("%s: the key is named %q, not after the origin", origin, name)
	}
	return nil
}

func checkRunner(r Runner) error {
	if r.Name == "" {
		return errors.New("name is required")
	}
	_, err := r.Hash()
	return err
}
