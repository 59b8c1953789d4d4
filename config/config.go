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
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/duration"
	"github.com/sessctl/sessctl/provider"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/witness"
)

// Config is the whole configuration of `sessctl serve`.
type Config struct {
	Listen            string `yaml:"listen" usage:"explicit proxy listen address (HTTPS_PROXY)"`
	AdminListen       string `yaml:"admin_listen" usage:"admin listener: /healthz, /metrics, API and UI"`
	TransparentListen string `yaml:"transparent_listen" usage:"transparent listener for firewall-redirected port 443"`
	// TransparentDstCheck is "resolve" (the original destination must be
	// among the SNI name's addresses) or "none" (trust SNI).
	TransparentDstCheck string `yaml:"transparent_dst_check" usage:"resolve (original destination must match the SNI name's addresses) or none"`
	DataDir             string `yaml:"data_dir" usage:"state directory (CA, database, keys)"`
	CADir               string `yaml:"ca_dir" usage:"CA directory (default DATA_DIR/ca)"`
	DB                  string `yaml:"db" usage:"session database (default DATA_DIR/sessions.db)"`
	RulesFile           string `yaml:"rules_file" usage:"rules file (default: the built-in secret ruleset)"`
	UpstreamKeyFile     string `yaml:"upstream_key_file" usage:"file holding the real OpenAI API key (else env OPENAI_API_KEY)"`
	// UpstreamKeys are further real keys (name -> file). An entry named
	// after a provider (openai, anthropic, azure-openai) is that
	// provider's default key; "PROVIDER/NAME" is a key of that provider
	// that a policy can pick by NAME; a plain NAME is an OpenAI key (as
	// before sessctl knew other providers).
	UpstreamKeys map[string]string `yaml:"upstream_keys"`
	// Providers assigns a provider to intercepted hosts other than
	// api.openai.com (openai), api.anthropic.com (anthropic) and
	// *.openai.azure.com (azure-openai): host -> provider name.
	Providers map[string]string `yaml:"providers"`
	// UpstreamCAFile adds CA certificates to trust for upstream TLS (tests,
	// private endpoints). The system roots and SSL_CERT_FILE stay trusted.
	UpstreamCAFile string `yaml:"upstream_ca_file" usage:"extra CA certificates trusted for upstream TLS"`
	// UpstreamAddr, when set, is the host:port every intercepted host is
	// dialled at (TLS still verifies the intercepted host name). For tests and
	// for private endpoints.
	UpstreamAddr string   `yaml:"upstream_addr" usage:"dial every intercepted host at this host:port (tests, private endpoints)"`
	Intercept    []string `yaml:"intercept" usage:"hosts to intercept (MITM)"`
	// ConnectPorts are the ports runners may CONNECT to (default 443).
	ConnectPorts []string `yaml:"connect_ports" usage:"ports runners may CONNECT to"`
	Passthrough  []string `yaml:"passthrough" usage:"hosts tunnelled without decryption"`
	Runners      []Runner `yaml:"runners" usage:"runners as NAME:TOKEN_SHA256"`
	// RunnersFile holds further runners (written by `sessctl token new`).
	RunnersFile string `yaml:"runners_file" usage:"runners file written by sessctl token new (default DATA_DIR/runners.yaml)"`
	// AdminTokens authenticate the admin API and UI; the name is recorded as
	// the approver of each decision.
	AdminTokens []Runner `yaml:"admin_tokens" usage:"admin tokens as NAME:TOKEN_SHA256"`
	// AdminTokensFile holds further admin tokens (the first run writes
	// one here), in the runners file format.
	AdminTokensFile string `yaml:"admin_tokens_file" usage:"admin tokens file (default DATA_DIR/admin_tokens.yaml)"`
	// MaxBody bounds a request or non-streamed answer body, in bytes.
	MaxBody int64 `yaml:"max_body" usage:"largest request or non-streamed answer body, bytes"`
	// RecordBodyLimit bounds how much of a streamed answer is kept in the
	// record; the rest is relayed but not stored (the record says so).
	RecordBodyLimit int64 `yaml:"record_body_limit" usage:"largest streamed answer kept in a record, bytes"`
	// MaxInflight bounds the exchanges one identity may have in progress.
	MaxInflight int64 `yaml:"max_inflight" usage:"exchanges one identity may have in progress at once"`
	// StreamHoldback bounds the text held back by the stream masker.
	StreamHoldback int `yaml:"stream_holdback" usage:"largest text the stream masker holds back, bytes"`
	// WSMaxMessage bounds one WebSocket message, in bytes.
	WSMaxMessage int64 `yaml:"ws_max_message" usage:"largest WebSocket message, bytes"`

	CheckpointEvery    int      `yaml:"checkpoint_every" usage:"sign a checkpoint after this many records"`
	CheckpointInterval Duration `yaml:"checkpoint_interval" usage:"sign a checkpoint at least this often"`
	CheckpointFile     string   `yaml:"checkpoint_file" usage:"append each signed checkpoint to this file"`
	// CheckpointURL receives each signed checkpoint as an HTTP POST, so a
	// copy lives where the proxy's host cannot rewrite it.
	CheckpointURL string `yaml:"checkpoint_url" usage:"POST each signed checkpoint to this URL"`
	// Witnesses cosign each checkpoint (C2SP tlog-witness); WitnessQuorum
	// is how many cosignatures a checkpoint needs (`sessctl verify`
	// checks it; fewer is logged).
	Witnesses     []Witness `yaml:"witnesses"`
	WitnessQuorum int       `yaml:"witness_quorum" usage:"cosignatures each checkpoint needs from the witnesses"`
	// LogPublic serves the log's tiles (/log/, C2SP tlog-tiles) on the
	// admin listener without the admin token.
	LogPublic bool `yaml:"log_public"`
	Retention struct {
		Bodies Duration `yaml:"bodies"`
	} `yaml:"retention"`

	ApprovalTimeout Duration `yaml:"approval_timeout" usage:"how long a held request waits for a decision"`
	ApprovalMode    string   `yaml:"approval_mode" usage:"hold (keep the request open) or ticket (refuse now, pass on retry once approved)"`
	ApprovalWebhook string   `yaml:"approval_webhook" usage:"URL notified of each held request"`
	SessionTokenTTL Duration `yaml:"session_token_ttl" usage:"lifetime of session tokens exchanged for OIDC tokens"`
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

	LeafValidity Duration `yaml:"leaf_validity" usage:"lifetime of minted leaf certificates"`
	LogLevel     string   `yaml:"log_level" usage:"debug, info, warn or error"`
	LogFormat    string   `yaml:"log_format" usage:"text or json"`
	// OtelEndpoint, when set, receives one OpenTelemetry span per exchange
	// over OTLP/HTTP: a collector's base URL (http://host:4318; the path
	// /v1/traces is added when none is given).
	OtelEndpoint string `yaml:"otel_endpoint" usage:"OTLP/HTTP collector URL for per-exchange traces (off when empty)"`
	// Quiet turns off the progress lines long work draws on a terminal
	// (serve --quiet); not a key of the file.
	Quiet bool `yaml:"-"`
}

// Runner is a static credential: a runner token or an admin token, given
// as its SHA-256 (token_sha256) or in clear (token).
type Runner = identity.Runner

// OIDC configures one trusted CI token issuer.
type OIDC = identity.OIDCIssuer

// Witness is one witness of the `witnesses` list: name, url, vkey.
type Witness = witness.Witness

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

// ParseDuration parses a Go duration, with "d" accepted for days (see
// internal/duration, which the session query filters share).
func ParseDuration(s string) (time.Duration, error) { return duration.Parse(s) }

// Default returns the embedded defaults: a proxy on loopback that
// intercepts api.openai.com and keeps its state under ./data. It is the
// one source of sessctl's defaults: the proxy fills unset options from it,
// and where a library package has its own default for a key (the stream
// holdback, checkpoint cadence, approval timeout, session token and leaf
// lifetimes) Default takes that package's exported constant.
func Default() *Config {
	return &Config{
		Listen:              "127.0.0.1:3128",
		AdminListen:         "127.0.0.1:9090",
		DataDir:             "./data",
		Intercept:           []string{ca.DefaultHost},
		ConnectPorts:        []string{"443"},
		MaxBody:             32 << 20,
		RecordBodyLimit:     8 << 20,
		StreamHoldback:      rules.DefaultHoldback,
		MaxInflight:         64,
		WSMaxMessage:        32 << 20,
		CheckpointEvery:     store.DefaultCheckpointEvery,
		CheckpointInterval:  Duration(store.DefaultCheckpointInterval),
		ApprovalTimeout:     Duration(approval.DefaultTimeout),
		ApprovalMode:        "hold",
		TransparentDstCheck: "resolve",
		SessionTokenTTL:     Duration(identity.DefaultSessionTokenTTL),
		LeafValidity:        Duration(ca.DefaultLeafValidity),
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

// Keys lists the keys that can be set with Set, that is from a flag or an
// environment variable, with a usage line each. They are derived from the
// yaml and usage tags of Config: every top-level key whose value is a
// string, a number, a duration, a list of strings or a list of runners
// (NAME:TOKEN_SHA256) is settable. Maps, nested sections (retention) and
// lists of structures (oidc, policies) are set in the file only.
func Keys() []Key {
	var ks []Key
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		kind := settable(f.Type)
		if kind == notSettable {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		ks = append(ks, Key{Name: name, Usage: f.Tag.Get("usage"), List: f.Type.Kind() == reflect.Slice, field: i})
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name })
	return ks
}

// Key describes one key settable from a flag or the environment.
type Key struct {
	// Name is the YAML key; it is also the flag's name.
	Name  string
	Usage string
	// List keys take several values (repeat the flag, or separate the
	// environment value with commas).
	List bool

	field int // index of the field in Config
}

// Env is the environment variable that sets the key: SESSCTL_ and the
// key in upper case.
func (k Key) Env() string { return "SESSCTL_" + strings.ToUpper(k.Name) }

type valueKind int

const (
	notSettable valueKind = iota
	stringValue
	intValue
	durationValue
	stringsValue
	runnersValue
)

var (
	durationType = reflect.TypeFor[Duration]()
	runnersType  = reflect.TypeFor[[]Runner]()
)

// settable tells how a value of type t is read from a flag, if at all.
func settable(t reflect.Type) valueKind {
	switch {
	case t == durationType:
		return durationValue
	case t == runnersType:
		return runnersValue
	case t.Kind() == reflect.String:
		return stringValue
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return intValue
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return stringsValue
	}
	return notSettable
}

// Set applies a value given as a flag or environment variable to key.
func (c *Config) Set(key string, values []string) error {
	keys := Keys()
	i := slices.IndexFunc(keys, func(k Key) bool { return k.Name == key })
	if i < 0 {
		return fmt.Errorf("config: unknown key %q", key)
	}
	if len(values) == 0 {
		return fmt.Errorf("config: %s: no value", key)
	}
	f := reflect.ValueOf(c).Elem().Field(keys[i].field)
	if err := setValue(f, values); err != nil {
		return fmt.Errorf("config: %s: %w", key, err)
	}
	return nil
}

// setValue parses values into the field f.
func setValue(f reflect.Value, values []string) error {
	switch settable(f.Type()) {
	case stringValue:
		f.SetString(values[0])
	case stringsValue:
		f.Set(reflect.ValueOf(slices.Clone(values)))
	case durationValue:
		d, err := ParseDuration(values[0])
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case intValue:
		n, err := strconv.ParseInt(values[0], 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid number %q", values[0])
		}
		f.SetInt(n)
	case runnersValue:
		rs := make([]Runner, 0, len(values))
		for _, s := range values {
			name, sum, ok := strings.Cut(s, ":")
			if !ok {
				return fmt.Errorf("runner %q: want NAME:TOKEN_SHA256", s)
			}
			rs = append(rs, Runner{Name: name, TokenSHA256: sum})
		}
		f.Set(reflect.ValueOf(rs))
	default:
		return errors.New("not settable from a flag")
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
	for _, h := range c.Intercept {
		// A wildcard stands for any one-label name below a domain.
		if d, ok := strings.CutPrefix(h, "*."); strings.Contains(h, "*") && (!ok || strings.Contains(d, "*") || !strings.Contains(d, ".")) {
			return fmt.Errorf("config: intercept: %q: a wildcard must be *.DOMAIN (like *.openai.azure.com)", h)
		}
	}
	for _, h := range c.Passthrough {
		if strings.Contains(h, "*") {
			return fmt.Errorf("config: passthrough: %q: wildcards are not allowed", h)
		}
	}
	for _, h := range c.Passthrough {
		for _, i := range c.Intercept {
			if strings.EqualFold(h, i) {
				return fmt.Errorf("config: %s is both intercepted and passed through", h)
			}
		}
	}
	if err := c.checkProviders(); err != nil {
		return err
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
	if c.OtelEndpoint != "" {
		if u, err := url.Parse(c.OtelEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("config: otel_endpoint: %q is not an http:// or https:// URL", c.OtelEndpoint)
		}
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
	if err := witness.Validate(c.Witnesses, c.WitnessQuorum); err != nil {
		return fmt.Errorf("config: witnesses: %w", err)
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

// checkProviders checks that every intercepted host has a known provider
// (a key of another provider's must never be sent there), that the
// providers map names known providers for intercepted hosts, and that
// upstream_keys names are a provider, PROVIDER/NAME or a plain NAME.
func (c *Config) checkProviders() error {
	for h, p := range c.Providers {
		if _, err := provider.Parse(p); err != nil {
			return fmt.Errorf("config: providers: %s: %w", h, err)
		}
		if !slices.ContainsFunc(c.Intercept, func(i string) bool { return strings.EqualFold(i, h) }) {
			return fmt.Errorf("config: providers: %s is not an intercepted host", h)
		}
	}
	for _, h := range c.Intercept {
		if _, ok := provider.ForHost(h, c.Providers); !ok {
			return fmt.Errorf("config: intercept: %s has no known provider: assign one in providers (%s: openai, anthropic or azure-openai)", h, h)
		}
	}
	seen := map[string]string{}
	for _, entry := range slices.Sorted(maps.Keys(c.UpstreamKeys)) {
		p, name, err := KeyName(entry)
		if err != nil {
			return fmt.Errorf("config: upstream_keys: %w", err)
		}
		id := string(p) + "/" + name
		if other, dup := seen[id]; dup {
			return fmt.Errorf("config: upstream_keys: %s and %s name the same key", other, entry)
		}
		seen[id] = entry
	}
	if _, ok := c.UpstreamKeys[string(provider.OpenAI)]; ok && c.UpstreamKeyFile != "" {
		return errors.New("config: upstream_keys: openai and upstream_key_file both set OpenAI's default key")
	}
	return nil
}

// KeyName reads the name of an upstream_keys entry: the provider whose key
// it is, and the key's name under that provider ("" for the provider's
// default key). A provider's name is its default key; "PROVIDER/NAME" is a
// named key of PROVIDER; a plain NAME is a named OpenAI key.
func KeyName(entry string) (provider.Name, string, error) {
	if p, err := provider.Parse(entry); err == nil {
		return p, "", nil
	}
	if ps, name, ok := strings.Cut(entry, "/"); ok {
		p, err := provider.Parse(ps)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", entry, err)
		}
		if name == "" || strings.Contains(name, "/") {
			return "", "", fmt.Errorf("%s: want PROVIDER/NAME", entry)
		}
		return p, name, nil
	}
	if entry == "" {
		return "", "", errors.New("empty key name")
	}
	return provider.OpenAI, entry, nil
}
