package config

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:4128" || c.DB != "/var/lib/sessctl/sessions.db" || c.CADir != "/var/lib/sessctl/ca" {
		t.Errorf("listen/db/ca_dir = %q %q %q", c.Listen, c.DB, c.CADir)
	}
	if time.Duration(c.Retention.Bodies) != 90*24*time.Hour || time.Duration(c.ApprovalTimeout) != 2*time.Minute {
		t.Errorf("durations: %v %v", c.Retention.Bodies, c.ApprovalTimeout)
	}
	if len(c.Runners) != 1 || len(c.Policies) != 1 || c.Policies[0].Record != "metadata" {
		t.Errorf("runners %v policies %v", c.Runners, c.Policies)
	}
	// Unset keys keep their defaults.
	if c.MaxBody != Default().MaxBody || c.ApprovalMode != "hold" {
		t.Errorf("defaults lost: max_body %d approval_mode %q", c.MaxBody, c.ApprovalMode)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "listen: 127.0.0.1:1\nlisten_addr: x\n", "listen_addr"},
		{"wrong type", "max_body: lots\n", "line 1"},
		{"bad duration", "approval_timeout: soon\n", "soon"},
		{"not yaml", "listen: [\n", "yaml"},
		{"runner without name", "runners: [{token_sha256: abc}]\n", ""},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "c.yaml")
			os.WriteFile(p, []byte(tc.yaml), 0o600)
			c, err := Load(p)
			if err == nil {
				err = c.Resolve()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestResolveRejects(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"listen not host:port", func(c *Config) { c.Listen = "nowhere" }, "listen"},
		{"no intercept", func(c *Config) { c.Intercept = nil }, "intercept"},
		{"host with scheme", func(c *Config) { c.Passthrough = []string{"https://x"} }, "bare host"},
		{"both lists", func(c *Config) { c.Passthrough = []string{"api.openai.com"} }, "both"},
		{"approval mode", func(c *Config) { c.ApprovalMode = "maybe" }, "approval_mode"},
		{"dst check", func(c *Config) { c.TransparentDstCheck = "trust" }, "transparent_dst_check"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"otel endpoint without scheme", func(c *Config) { c.OtelEndpoint = "collector:4318" }, "otel_endpoint"},
		{"otel endpoint grpc scheme", func(c *Config) { c.OtelEndpoint = "grpc://collector:4317" }, "otel_endpoint"},
		{"runner token and hash", func(c *Config) {
			c.Runners = []Runner{{Name: "a", Token: "x", TokenSHA256: strings.Repeat("0", 64)}}
		}, "not both"},
		{"runner bad hash", func(c *Config) { c.Runners = []Runner{{Name: "a", TokenSHA256: "zz"}} }, "64 hex"},
		{"policy record mode", func(c *Config) { c.Policies = []Policy{{Name: "p", Record: "some"}} }, "policies"},
		{"intercepted host without provider", func(c *Config) {
			c.Intercept = []string{"api.openai.com", "llm.corp.example"}
		}, "llm.corp.example has no known provider"},
		{"unknown provider", func(c *Config) {
			c.Intercept = []string{"llm.corp.example"}
			c.Providers = map[string]string{"llm.corp.example": "gemini"}
		}, "unknown provider"},
		{"provider for a host not intercepted", func(c *Config) {
			c.Providers = map[string]string{"llm.corp.example": "azure-openai"}
		}, "not an intercepted host"},
		{"wildcard not leading", func(c *Config) { c.Intercept = []string{"api.*.com"} }, "*.DOMAIN"},
		{"wildcard over a TLD", func(c *Config) { c.Intercept = []string{"*.com"} }, "*.DOMAIN"},
		{"wildcard passthrough", func(c *Config) { c.Passthrough = []string{"*.github.com"} }, "wildcards"},
		{"wildcard without provider", func(c *Config) { c.Intercept = []string{"*.corp.example"} }, "no known provider"},
		{"key of an unknown provider", func(c *Config) { c.UpstreamKeys = map[string]string{"gemini/team": "/k"} }, "unknown provider"},
		{"one key named twice", func(c *Config) { c.UpstreamKeys = map[string]string{"team": "/a", "openai/team": "/b"} }, "same key"},
		{"two default OpenAI keys", func(c *Config) {
			c.UpstreamKeyFile = "/a"
			c.UpstreamKeys = map[string]string{"openai": "/b"}
		}, "both set"},
		{"witness bad vkey", func(c *Config) { c.Witnesses = []Witness{{Name: "w", URL: "https://w.test/", VKey: "nope"}} }, "witnesses"},
		{"witness bad url", func(c *Config) {
			c.Witnesses = []Witness{{Name: "w", URL: "w.test", VKey: "w.test/a+7ac61995+BJ5mze/sRmlgT0eePY3fn54sHWeFa+5jrPrtuq0h8Q/c"}}
		}, "not an http(s) URL"},
		{"witness quorum above witnesses", func(c *Config) { c.WitnessQuorum = 1 }, "witness_quorum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(c)
			err := c.Resolve()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestSet(t *testing.T) {
	c := Default()
	for key, vals := range map[string][]string{
		"listen":           {"0.0.0.0:3128"},
		"intercept":        {"api.openai.com", "api.example.com"},
		"max_body":         {"1024"},
		"approval_timeout": {"7d"},
		"runners":          {"ci-1:" + strings.Repeat("ab", 32)},
	} {
		if err := c.Set(key, vals); err != nil {
			t.Fatalf("Set(%s): %v", key, err)
		}
	}
	if c.Listen != "0.0.0.0:3128" || len(c.Intercept) != 2 || c.MaxBody != 1024 ||
		time.Duration(c.ApprovalTimeout) != 7*24*time.Hour || c.Runners[0].Name != "ci-1" {
		t.Fatalf("after Set: %+v", c)
	}
	for key, val := range map[string]string{"max_body": "big", "approval_timeout": "-1s", "runners": "no-colon", "nope": "x"} {
		if err := c.Set(key, []string{val}); err == nil {
			t.Errorf("Set(%s, %q) succeeded", key, val)
		}
	}
	// Every settable key has a usage line.
	for _, k := range Keys() {
		if k.Usage == "" {
			t.Errorf("key %s has no usage", k.Name)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "10s": 10 * time.Second, "1h30m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "1y", "soon"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
}

// TestEveryScalarKeyHasFlagAndEnv walks Config itself: every top-level key
// holding a string, number, duration or list of strings must be settable
// from a flag and from SESSCTL_<KEY>, and setting it must reach the field.
func TestEveryScalarKeyHasFlagAndEnv(t *testing.T) {
	keys := map[string]Key{}
	for _, k := range Keys() {
		keys[k.Name] = k
	}
	sample := map[reflect.Type][]string{
		reflect.TypeFor[string]():   {"127.0.0.1:1"},
		reflect.TypeFor[int]():      {"77"},
		reflect.TypeFor[int64]():    {"77"},
		reflect.TypeFor[Duration](): {"3m"},
		reflect.TypeFor[[]string](): {"a", "b"},
	}
	typ := reflect.TypeFor[Config]()
	checked := 0
	for i := range typ.NumField() {
		f := typ.Field(i)
		vals, scalar := sample[f.Type]
		if !scalar {
			continue
		}
		checked++
		name := f.Tag.Get("yaml")
		k, ok := keys[name]
		if !ok {
			t.Errorf("key %s (%s) has no flag", name, f.Name)
			continue
		}
		if want := "SESSCTL_" + strings.ToUpper(name); k.Env() != want {
			t.Errorf("key %s: env %q, want %q", name, k.Env(), want)
		}
		if k.Usage == "" {
			t.Errorf("key %s has no usage", name)
		}
		if k.List != (f.Type.Kind() == reflect.Slice) {
			t.Errorf("key %s: List = %v", name, k.List)
		}
		c := Default()
		before := fmt.Sprint(reflect.ValueOf(c).Elem().Field(i).Interface())
		if err := c.Set(name, vals); err != nil {
			t.Errorf("Set(%s, %q): %v", name, vals, err)
			continue
		}
		if after := fmt.Sprint(reflect.ValueOf(c).Elem().Field(i).Interface()); after == before {
			t.Errorf("Set(%s, %q) left %s at %s", name, vals, f.Name, after)
		}
	}
	if checked < 30 {
		t.Fatalf("only %d scalar keys found in Config", checked)
	}
}

// TestFlagNames pins the flag and environment names that exist: they are
// a contract, and deriving them from the YAML tags must keep every one.
func TestFlagNames(t *testing.T) {
	have := map[string]Key{}
	for _, k := range Keys() {
		have[k.Name] = k
	}
	for _, name := range []string{
		"listen", "admin_listen", "transparent_listen", "transparent_dst_check", "data_dir", "ca_dir", "db",
		"rules_file", "upstream_key_file", "upstream_ca_file", "upstream_addr", "runners_file", "checkpoint_file",
		"checkpoint_url", "approval_mode", "approval_webhook", "log_level", "log_format", "intercept", "passthrough",
		"runners", "max_body", "record_body_limit", "max_inflight", "ws_max_message", "checkpoint_interval",
		"approval_timeout", "session_token_ttl", "leaf_validity",
		// missing before the keys were derived from the YAML tags
		"stream_holdback", "checkpoint_every", "connect_ports", "admin_tokens_file",
	} {
		k, ok := have[name]
		if !ok {
			t.Errorf("flag --%s is gone", name)
			continue
		}
		if want := "SESSCTL_" + strings.ToUpper(name); k.Env() != want {
			t.Errorf("env for %s = %s, want %s", name, k.Env(), want)
		}
	}
	for _, list := range []string{"intercept", "passthrough", "runners", "connect_ports", "admin_tokens"} {
		if !have[list].List {
			t.Errorf("%s is not a list key", list)
		}
	}
}

// TestPrecedence checks the layering README and sessctl.example.yaml
// describe: the file wins over the embedded defaults, and a flag or
// environment value (applied with Set) wins over the file.
func TestPrecedence(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:4128" || c.MaxBody != Default().MaxBody {
		t.Fatalf("file over defaults: listen %q max_body %d", c.Listen, c.MaxBody)
	}
	for key, v := range map[string][]string{"listen": {"127.0.0.1:5128"}, "passthrough": {"example.org"}, "stream_holdback": {"512"}} {
		if err := c.Set(key, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:5128" || len(c.Passthrough) != 1 || c.Passthrough[0] != "example.org" || c.StreamHoldback != 512 {
		t.Fatalf("flags over file: listen %q passthrough %v stream_holdback %d", c.Listen, c.Passthrough, c.StreamHoldback)
	}
	// Keys neither set nor in the file keep the file's or the default value.
	if c.AdminListen != "127.0.0.1:9191" || c.CheckpointEvery != Default().CheckpointEvery {
		t.Fatalf("untouched keys: admin_listen %q checkpoint_every %d", c.AdminListen, c.CheckpointEvery)
	}
}

// TestListKeyReplacesDefault checks that a list in the file replaces the
// default list rather than adding to it (connect_ports defaults to 443).
func TestListKeyReplacesDefault(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("connect_ports: [\"8443\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ConnectPorts) != 1 || c.ConnectPorts[0] != "8443" {
		t.Fatalf("connect_ports = %v", c.ConnectPorts)
	}
	if d := Default().ConnectPorts; len(d) != 1 || d[0] != "443" {
		t.Fatalf("default connect_ports changed to %v", d)
	}
}

// TestDefaultValues pins the embedded defaults sessctl.example.yaml and
// README document, now that some come from other packages' constants.
func TestDefaultValues(t *testing.T) {
	d := Default()
	got := fmt.Sprint(d.Listen, d.AdminListen, d.DataDir, d.Intercept, d.ConnectPorts, d.MaxBody, d.RecordBodyLimit,
		d.StreamHoldback, d.MaxInflight, d.WSMaxMessage, d.CheckpointEvery, time.Duration(d.CheckpointInterval),
		time.Duration(d.ApprovalTimeout), d.ApprovalMode, d.TransparentDstCheck, time.Duration(d.SessionTokenTTL),
		time.Duration(d.LeafValidity), d.LogLevel, d.LogFormat)
	want := fmt.Sprint("127.0.0.1:3128", "127.0.0.1:9090", "./data", []string{"api.openai.com"}, []string{"443"}, 32<<20, 8<<20,
		256, 64, 32<<20, 1000, 10*time.Second,
		5*time.Minute, "hold", "resolve", 6*time.Hour,
		24*time.Hour, "info", "text")
	if got != want {
		t.Fatalf("defaults\n got %s\nwant %s", got, want)
	}
}

func TestCentralOrigins(t *testing.T) {
	const origin = "proxy-a/0190c3a0-0000-7000-8000-000000000001"
	_, good, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, origin, key, err string
	}{
		{"good", origin, good, ""},
		{"not a key", origin, "hello", "not a note verifier key"},
		{"named after another origin", "proxy-b/x", good, "not after the origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.CentralOrigins = map[string]string{tc.origin: tc.key}
			err := c.Resolve()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Resolve: %v, want %q", err, tc.err)
			}
		})
	}
}

func TestProvidersResolve(t *testing.T) {
	c := Default()
	c.Intercept = []string{"api.openai.com", "api.anthropic.com", "res1.openai.azure.com", "*.openai.azure.com", "llm.corp.example"}
	c.Providers = map[string]string{"LLM.corp.example": "azure-openai"}
	c.UpstreamKeys = map[string]string{"anthropic": "/a", "anthropic/team": "/b", "team": "/c"}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
}

func TestKeyName(t *testing.T) {
	for _, tc := range []struct {
		entry, prov, name, err string
	}{
		{"anthropic", "anthropic", "", ""},
		{"azure-openai", "azure-openai", "", ""},
		{"openai", "openai", "", ""},
		{"anthropic/team-a", "anthropic", "team-a", ""},
		{"team-a", "openai", "team-a", ""},
		{"gemini/x", "", "", "unknown provider"},
		{"anthropic/", "", "", "PROVIDER/NAME"},
		{"anthropic/a/b", "", "", "PROVIDER/NAME"},
		{"", "", "", "empty"},
	} {
		p, n, err := KeyName(tc.entry)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("KeyName(%q) err = %v, want %q", tc.entry, err, tc.err)
			}
			continue
		}
		if err != nil || string(p) != tc.prov || n != tc.name {
			t.Errorf("KeyName(%q) = %q, %q, %v; want %q, %q", tc.entry, p, n, err, tc.prov, tc.name)
		}
	}
}
