package command

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/identity"
	"github.com/urfave/cli/v2"
)

// runTokenCommand runs "sessctl token ARGS..." and returns its stdout and
// stderr.
func runTokenCommand(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:           "sessctl",
		Commands:       []*cli.Command{tokenCommand()},
		Writer:         &out,
		ErrWriter:      &errOut,
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.RunContext(context.Background(), append([]string{"sessctl", "token"}, args...))
	return out.String(), errOut.String(), err
}

func TestTokenNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "runners.yaml")
	out, errOut, err := runTokenCommand(t, "new", "--name", "ci-1", "--runners-file", path)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(tok, identity.RunnerTokenPrefix) {
		t.Fatalf("stdout = %q, want the token alone on one line", out)
	}
	if strings.Contains(errOut, tok) {
		t.Fatalf("stderr repeats the token: %q", errOut)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("runners file mode %v, want 0600", st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), tok) {
		t.Fatal("runners file holds the token in clear")
	}
	runners, err := identity.LoadRunnersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(runners) != 1 || runners[0].Name != "ci-1" || runners[0].TokenSHA256 != identity.HashToken(tok) {
		t.Fatalf("runners = %+v", runners)
	}

	// The stored hash authenticates the printed token.
	a, err := identity.New(context.Background(), identity.Config{Runners: runners})
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Authenticate(context.Background(), tok)
	if err != nil || id.Runner != "ci-1" {
		t.Fatalf("Authenticate = %+v, %v", id, err)
	}

	// A second runner is appended; a repeated name is refused.
	out2, _, err := runTokenCommand(t, "new", "--name", "ci-2", "--runners-file", path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out2) == tok {
		t.Fatal("same token twice")
	}
	if _, _, err := runTokenCommand(t, "new", "--name", "ci-1", "--runners-file", path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("repeated name: err = %v", err)
	}
	if runners, _ := identity.LoadRunnersFile(path); len(runners) != 2 {
		t.Fatalf("runners = %+v", runners)
	}
}

func TestTokenNewBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runners.yaml")
	tests := []struct {
		name string
		args []string
	}{
		{"no name", []string{"new", "--runners-file", path}},
		{"blank name", []string{"new", "--name", " ", "--runners-file", path}},
		{"control character", []string{"new", "--name", "a\nb", "--runners-file", path}},
		{"extra argument", []string{"new", "--name", "a", "--runners-file", path, "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runTokenCommand(t, tt.args...)
			if err == nil || strings.Contains(out, identity.RunnerTokenPrefix) {
				t.Fatalf("out %q, err %v; want an error and no token", out, err)
			}
		})
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("runners file written on bad input: %v", err)
	}
}
