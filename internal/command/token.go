package command

import (
	"fmt"
	"strings"

	"github.com/sessctl/sessctl/identity"
	"github.com/urfave/cli/v2"
)

// tokenCommand is "sessctl token": make runner tokens.
func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "manage runner tokens",
		Subcommands: []*cli.Command{
			{
				Name:      "new",
				Usage:     "create a runner token, print it once and store only its hash",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "runner name, recorded with each of its requests", Required: true},
					&cli.StringFlag{
						Name:    "runners-file",
						Usage:   "runners file to add the token's hash to (created with mode 0600)",
						Value:   "data/runners.yaml",
						EnvVars: []string{"SESSCTL_RUNNERS_FILE"},
					},
				},
				Action: tokenNew,
			},
		},
	}
}

// tokenNew is "sessctl token new".
func tokenNew(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("sessctl token new: unexpected argument %q", c.Args().First()), 2)
	}
	name := strings.TrimSpace(c.String("name"))
	if name == "" {
		return cli.Exit("sessctl token new: --name must not be empty", 2)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return cli.Exit("sessctl token new: --name must not contain control characters", 2)
	}
	tok, err := identity.NewRunnerToken()
	if err != nil {
		return err
	}
	path := c.String("runners-file")
	if err := identity.AddRunner(path, identity.Runner{Name: name, TokenSHA256: identity.HashToken(tok)}); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, tok)
	fmt.Fprintf(c.App.ErrWriter, "runner %q added to %s; the token above is shown only this once (only its SHA-256 is stored).\n"+
		"On the runner: export OPENAI_API_KEY=<the token>\n", name, path)
	return nil
}
