package command

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runRulesCommand runs "sessctl rules ARGS..." with stdin and returns its
// stdout, stderr and error.
func runRulesCommand(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:           "sessctl",
		Commands:       []*cli.Command{rulesCommand()},
		Reader:         strings.NewReader(stdin),
		Writer:         &out,
		ErrWriter:      &errOut,
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.RunContext(context.Background(), append([]string{"sessctl", "rules"}, args...))
	return out.String(), errOut.String(), err
}

func TestRulesList(t *testing.T) {
	out, errOut, err := runRulesCommand(t, "", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "aws-access-key") || !strings.Contains(out, "private-key") || !strings.Contains(errOut, "built-in ruleset") {
		t.Errorf("list:\n%s%s", out, errOut)
	}
	out, _, err = runRulesCommand(t, "", "list", "--yaml")
	if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "#") || !strings.Contains(out, "rules:") {
		t.Errorf("list --yaml: %v\n%s", err, out)
	}
}

func TestRulesTest(t *testing.T) {
	key := "AKIA" + "IOSFODNN7EXAMPLE"
	out, errOut, err := runRulesCommand(t, "key "+key+" ok", "test")
	if err != nil {
		t.Fatal(err)
	}
	if out != "key [MASKED:aws-access-key] ok" || !strings.Contains(errOut, "fired: aws-access-key (mask, request) x1") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	if strings.Contains(errOut, key) {
		t.Error("the secret was printed")
	}

	path := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(path, []byte("rules:\n  - name: no-drop\n    pattern: '(?i)drop table'\n    action: block\n    scope: [response]\n"), 0o600)
	if _, errOut, err := runRulesCommand(t, "drop table x", "test", "--rules", path); err != nil || !strings.Contains(errOut, "no rule fired") {
		t.Errorf("request scope: %v %q", err, errOut)
	}
	_, _, err = runRulesCommand(t, "drop table x", "test", "--rules", path, "--response")
	if ec, ok := err.(cli.ExitCoder); !ok || ec.ExitCode() != 1 || !strings.Contains(err.Error(), "blocked by rule no-drop") {
		t.Errorf("block: %v", err)
	}

	os.WriteFile(path, []byte("rules:\n  - name: bad\n    pattern: '('\n    action: mask\n"), 0o600)
	if _, _, err := runRulesCommand(t, "", "test", "--rules", path); err == nil || !strings.Contains(err.Error(), `line 2: rule "bad"`) {
		t.Errorf("bad file: %v", err)
	}
}
