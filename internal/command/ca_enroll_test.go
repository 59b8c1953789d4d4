//go:build !nostepca

package command

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/ca"
	"github.com/urfave/cli/v2"
)

// runEnroll runs "sessctl enroll ARGS" and returns stderr and the error.
func runEnroll(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name: "sessctl", Commands: []*cli.Command{caEnrollCommand()},
		Writer: &out, ErrWriter: &errOut, ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.RunContext(context.Background(), append([]string{"sessctl", "enroll"}, args...))
	return errOut.String(), err
}

func TestCAEnrollCommandErrors(t *testing.T) {
	dir := t.TempDir()
	if err := ca.Init(filepath.Join(dir, "root"), ca.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root", "ca.crt")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret-password\n"), 0o600)
	// A loopback port with nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "https://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no credentials", []string{"--ca-url", down, "--root", root}, "--password-file"},
		{"bad mode", []string{"--ca-url", down, "--root", root, "--token", "x", "--mode", "root"}, "--mode must be leaf or intermediate"},
		{"missing flag", []string{"--root", root}, "ca-url"},
		{"argument", []string{"--ca-url", down, "--root", root, "extra"}, "unexpected argument"},
		{"step-ca down", []string{"--ca-url", down, "--root", root, "--provisioner", "p", "--password-file", pw, "--dir", filepath.Join(dir, "e")}, "step-ca unreachable"},
	}
	for _, tt := range tests {
		_, err := runEnroll(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret-password") {
			t.Errorf("%s: error quotes the password", tt.name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "e", "stepca.json")); err == nil {
		t.Error("a failed enrollment left stepca.json behind")
	}
}
