package command

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestRunAppExitStatus(t *testing.T) {
	tests := []struct {
		name     string
		action   cli.ActionFunc
		args     []string
		want     int
		wantErrs string
	}{
		{"success", func(*cli.Context) error { return nil }, nil, 0, ""},
		{"exit coder", func(*cli.Context) error { return cli.Exit("blocked by rule x", 1) }, nil, 1, "blocked by rule x\n"},
		{"silent exit coder", func(*cli.Context) error { return cli.Exit("", 1) }, nil, 1, ""},
		{"plain error", func(*cli.Context) error { return errors.New("boom") }, nil, 2, "sessctl: boom\n"},
		{"bad usage", func(*cli.Context) error { return nil }, []string{"--no-such-flag"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			app := &cli.App{
				Name:     "sessctl",
				Writer:   io.Discard,
				Commands: []*cli.Command{{Name: "do", Action: tt.action}},
			}
			got := runApp(context.Background(), app, append([]string{"sessctl", "do"}, tt.args...), &stderr)
			if got != tt.want || stderr.String() != tt.wantErrs {
				t.Errorf("exit %d, stderr %q; want %d, %q", got, stderr.String(), tt.want, tt.wantErrs)
			}
		})
	}
}

func TestNewHasEveryCommand(t *testing.T) {
	app := New()
	for _, name := range []string{"serve", "ca", "token", "rules", "sessions", "approvals", "verify", "proof", "checkpoint"} {
		if app.Command(name) == nil {
			t.Errorf("no %q command", name)
		}
	}
}

// TestCAInitFromConfig: without --host, `ca init --config` constrains the
// CA to every intercepted host of the configuration, as the first run of
// serve does.
func TestCAInitFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sessctl.yaml")
	os.WriteFile(cfgPath, []byte("intercept: [api.openai.com, api.anthropic.com, res1.openai.azure.com]\n"), 0o600)
	caDir := filepath.Join(dir, "ca")
	var stderr bytes.Buffer
	if code := runApp(context.Background(), New(), []string{"sessctl", "ca", "init", "--dir", caDir, "--config", cfgPath}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	pemBytes, err := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"api.openai.com", "api.anthropic.com", "res1.openai.azure.com", "sessctl.internal"}
	if !slices.Equal(cert.PermittedDNSDomains, want) {
		t.Errorf("name constraints %v, want %v", cert.PermittedDNSDomains, want)
	}
	// A configuration with an intercepted host of no provider is refused.
	os.WriteFile(cfgPath, []byte("intercept: [llm.corp.example]\n"), 0o600)
	stderr.Reset()
	if code := runApp(context.Background(), New(), []string{"sessctl", "ca", "init", "--dir", filepath.Join(dir, "ca2"), "--config", cfgPath}, &stderr); code != 2 || !strings.Contains(stderr.String(), "no known provider") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}
