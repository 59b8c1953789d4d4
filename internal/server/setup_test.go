package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/provider"
)

func TestLoadTokensCreatesOneOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin_tokens.yaml")
	all, tok, err := loadTokens(file, nil, "admin", true)
	if err != nil || tok == "" || len(all) != 1 || all[0].Name != "admin" || all[0].TokenSHA256 != identity.HashToken(tok) {
		t.Fatalf("first run: %+v, token %q, %v", all, tok, err)
	}
	if raw, _ := os.ReadFile(file); bytes.Contains(raw, []byte(tok)) {
		t.Fatal("the tokens file holds the token in clear")
	}
	again, tok2, err := loadTokens(file, nil, "admin", true)
	if err != nil || tok2 != "" || len(again) != 1 || again[0].TokenSHA256 != all[0].TokenSHA256 {
		t.Fatalf("second run: %+v, token %q, %v; want the stored token and none new", again, tok2, err)
	}
	none, tok3, err := loadTokens(filepath.Join(t.TempDir(), "runners.yaml"), nil, "runner-1", false)
	if err != nil || tok3 != "" || len(none) != 0 {
		t.Fatalf("create off: %+v, token %q, %v; want nothing", none, tok3, err)
	}
	configured := []identity.Runner{{Name: "ci", TokenSHA256: identity.HashToken("x")}}
	if got, tok4, err := loadTokens(filepath.Join(t.TempDir(), "runners.yaml"), configured, "runner-1", true); err != nil || tok4 != "" || len(got) != 1 {
		t.Fatalf("configured runner: %+v, token %q, %v; want it alone", got, tok4, err)
	}
}

func TestSessionKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.key")
	k, err := sessionKey(path)
	if err != nil || len(k) == 0 {
		t.Fatalf("create: %d bytes, %v", len(k), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session key file: %v, %v; want mode 0600", fi, err)
	}
	k2, err := sessionKey(path)
	if err != nil || !bytes.Equal(k, k2) {
		t.Fatalf("reload: %v; want the same key", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sessionKey(path); err == nil || !strings.Contains(err.Error(), "session key") {
		t.Fatalf("a readable session key file: %v, want an error", err)
	}
}

func TestUpstreamKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, other := write("good", "sk-default\n", 0o600), write("other", " sk-other ", 0o600)
	empty, open := write("empty", "\n", 0o600), write("open", "sk-open", 0o644)

	t.Setenv("OPENAI_API_KEY", " sk-from-env ")
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-env")
	t.Setenv("AZURE_OPENAI_API_KEY", "")
	// want is PROVIDER/NAME -> key.
	tests := []struct {
		name    string
		file    string
		named   map[string]string
		want    map[string]string
		wantErr string
	}{
		{"environment", "", nil, map[string]string{"openai/": "sk-from-env", "anthropic/": "sk-ant-env"}, ""},
		{"file over environment", good, nil, map[string]string{"openai/": "sk-default", "anthropic/": "sk-ant-env"}, ""},
		{"named keys", good, map[string]string{"team": other}, map[string]string{"openai/": "sk-default", "openai/team": "sk-other", "anthropic/": "sk-ant-env"}, ""},
		{"provider entry over environment", "", map[string]string{"anthropic": good, "azure-openai": other},
			map[string]string{"openai/": "sk-from-env", "anthropic/": "sk-default", "azure-openai/": "sk-other"}, ""},
		{"named key of a provider", "", map[string]string{"anthropic/team": other},
			map[string]string{"openai/": "sk-from-env", "anthropic/": "sk-ant-env", "anthropic/team": "sk-other"}, ""},
		{"unknown provider", "", map[string]string{"gemini/team": other}, nil, "unknown provider"},
		{"empty file", empty, nil, nil, "is empty"},
		{"readable by others", open, nil, nil, "upstream key"},
		{"bad named key", good, map[string]string{"team": open}, nil, "upstream_keys team"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.UpstreamKeyFile, cfg.UpstreamKeys = tt.file, tt.named
			keys, err := upstreamKeys(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "sk-open") {
					t.Fatal("the error quotes the key")
				}
				return
			}
			got := map[string]string{}
			for p, named := range keys {
				for n, k := range named {
					got[string(p)+"/"+n] = k
				}
			}
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("keys = %v, %v; want %v", got, err, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("key %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestCheckPolicyKeys: a policy's key must exist for at least one
// intercepted provider; it is looked up per provider at request time.
func TestCheckPolicyKeys(t *testing.T) {
	keys := provider.Keys{}
	keys.Set(provider.OpenAI, "", "sk-o")
	keys.Set(provider.Anthropic, "team", "sk-ant-team")
	for _, tc := range []struct {
		intercept []string
		key       string
		ok        bool
	}{
		{[]string{"api.openai.com"}, "", true},
		{[]string{"api.openai.com", "api.anthropic.com"}, "team", true},
		// Only Anthropic has "team", and Anthropic is not intercepted.
		{[]string{"api.openai.com"}, "team", false},
		{[]string{"api.anthropic.com"}, "other", false},
	} {
		cfg := config.Default()
		cfg.Intercept = tc.intercept
		cfg.Policies = []config.Policy{{Name: "p", Key: tc.key}}
		if err := checkPolicyKeys(cfg, keys); (err == nil) != tc.ok {
			t.Errorf("intercept %v key %q: err = %v, want ok %v", tc.intercept, tc.key, err, tc.ok)
		}
	}
}
