package command

import (
	"bytes"
	"context"
	"errors"
	"io"
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
