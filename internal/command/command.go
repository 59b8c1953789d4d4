// Package command is sessctl's command line: one urfave/cli command per
// file (serve, ca, token, rules, sessions, approvals, verify, proof,
// checkpoint). The commands only wire flags to the packages that do the
// work; `sessctl serve` hands its config to [server.Run].
package command

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// New returns the sessctl application. Errors are printed to stderr by
// Main, not by the application.
func New() *cli.App {
	return &cli.App{
		Name:  "sessctl",
		Usage: "a recording, rule-enforcing TLS gate between CI runners and the OpenAI API",
		Commands: []*cli.Command{
			serveCommand(),
			caCommand(),
			tokenCommand(),
			rulesCommand(),
			sessionsCommand(),
			consoleCommand(),
			approvalsCommand(),
			verifyCommand(),
			proofCommand(),
			checkpointCommand(),
			shipCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// Main runs sessctl with args (program name first) and returns the exit
// status: the code of a [cli.ExitCoder] (its message, if any, printed to
// stderr), else 2 with "sessctl: " and the error. Errors urfave/cli
// reports itself (bad usage) exit 2 too.
func Main(ctx context.Context, args []string) int {
	return runApp(ctx, New(), args, os.Stderr)
}

// runApp is Main for a given application and stderr.
func runApp(ctx context.Context, app *cli.App, args []string, stderr io.Writer) int {
	handled, code := false, 0
	app.ExitErrHandler = func(_ *cli.Context, err error) {
		if err == nil || handled {
			return
		}
		handled = true
		if coder, ok := err.(cli.ExitCoder); ok {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(stderr, msg)
			}
			code = coder.ExitCode()
			return
		}
		fmt.Fprintln(stderr, "sessctl:", err)
		code = 2
	}
	err := app.RunContext(ctx, args)
	switch {
	case handled:
		return code
	case err != nil:
		return 2
	}
	return 0
}
