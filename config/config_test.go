package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
