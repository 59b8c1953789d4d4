package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
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
		},
		ExitErrHandler: func(c *cli.Context, err error) {
			if err == nil {
				return
			}
			if coder, ok := err.(cli.ExitCoder); ok {
				if msg := err.Error(); msg != "" {
					fmt.Fprintln(os.Stderr, msg)
				}
				os.Exit(coder.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "sessctl:", err)
			os.Exit(2)
		},
	}
	if err := app.RunContext(context.Background(), os.Args); err != nil {
		os.Exit(2)
	}
}
