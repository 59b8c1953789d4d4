package command

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/internal/server"
)

// consoleCommand serves the admin UI and API over a fleet's PostgreSQL,
// without a proxy: for an auditor's or approver's machine.
func consoleCommand() *cli.Command {
	return &cli.Command{
		Name:  "console",
		Usage: "serve the admin UI and API over a fleet's PostgreSQL (no proxy): search every replica's log, decide held requests",
		Description: "Same admin tokens, login and pages as a replica's admin listener. Sessions come from the logs\n" +
			"the replicas shipped; an approval decided here is handed to the replica holding the request,\n" +
			"which decides and records it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "central", Usage: "PostgreSQL DSN of the fleet (required)", EnvVars: []string{"SESSCTL_CENTRAL_DSN"}},
			&cli.StringFlag{Name: "listen", Value: server.DefaultConsoleListen, Usage: "address of the UI and API (keep it on loopback, or behind TLS and a firewall)"},
			&cli.StringFlag{Name: "config", Usage: "YAML config file whose admin_tokens and admin_tokens_file are used", EnvVars: []string{"SESSCTL_CONFIG"}},
			&cli.StringFlag{Name: "admin_tokens_file", Aliases: []string{"admin-tokens-file"}, Usage: "admin tokens file (the same as the replicas')", EnvVars: []string{"SESSCTL_ADMIN_TOKENS_FILE"}},
		},
		Action: func(c *cli.Context) error {
			if c.String("central") == "" {
				return cli.Exit("sessctl console: --central DSN (or SESSCTL_CENTRAL_DSN) is required", 2)
			}
			cfg := config.Default()
			if p := c.String("config"); p != "" {
				var err error
				if cfg, err = config.Load(p); err != nil {
					return cli.Exit("sessctl console: "+err.Error(), 2)
				}
			}
			if p := c.String("admin_tokens_file"); p != "" {
				cfg.AdminTokensFile = p
			}
			if err := cfg.Resolve(); err != nil {
				return cli.Exit("sessctl console: "+err.Error(), 2)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := server.RunConsole(ctx, cfg, c.String("central"), c.String("listen"), newLogger(cfg)); err != nil {
				return cli.Exit("sessctl console: "+err.Error(), 1)
			}
			return nil
		},
	}
}
