package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/web"
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
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9091", Usage: "address of the UI and API (keep it on loopback, or behind TLS and a firewall)"},
			&cli.StringFlag{Name: "config", Usage: "YAML config file whose admin_tokens and admin_tokens_file are used", EnvVars: []string{"SESSCTL_CONFIG"}},
			&cli.StringFlag{Name: "admin_tokens_file", Usage: "admin tokens file (the same as the replicas')", EnvVars: []string{"SESSCTL_ADMIN_TOKENS_FILE"}},
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
			admins, _, err := loadTokens(cfg.AdminTokensFile, cfg.AdminTokens, "admin", false)
			if err != nil {
				return cli.Exit("sessctl console: "+err.Error(), 2)
			}
			if len(admins) == 0 {
				return cli.Exit("sessctl console: no admin tokens: give the replicas' config (--config) or admin tokens file (--admin_tokens_file)", 2)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := console(ctx, c.String("central"), c.String("listen"), admins, newLogger(cfg)); err != nil {
				return cli.Exit("sessctl console: "+err.Error(), 1)
			}
			return nil
		},
	}
}

func console(ctx context.Context, dsn, listen string, admins []config.Runner, log *slog.Logger) error {
	fleet, err := central.OpenFleet(ctx, dsn)
	if err != nil {
		return err
	}
	defer fleet.Close()
	if err := central.Migrate(ctx, fleet.Pool()); err != nil {
		return err
	}
	inbox, err := central.NewInbox(fleet.Pool(), central.InboxOptions{Logger: log})
	if err != nil {
		return err
	}
	go inbox.Run(ctx)
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if !isLoopback(l.Addr()) {
		log.Warn("console is not on loopback: keep it behind TLS and a firewall", "addr", l.Addr().String())
	}
	srv := &http.Server{
		Handler: web.NewHandler(web.Options{
			Health: func() error {
				hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				if err := fleet.Pool().Ping(hctx); err != nil {
					return fmt.Errorf("PostgreSQL unreachable: %w", err)
				}
				return nil
			},
			Logger: log, Sessions: fleet, Approvals: inbox, AdminTokens: admins,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Info("sessctl console serving", "listen", l.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
