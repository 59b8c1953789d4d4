package command

import (
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/internal/server"
)

// serveCommand is "sessctl serve": load the config (defaults, --config
// file, flags and SESSCTL_* variables), build the logger and run the
// server until SIGINT or SIGTERM.
func serveCommand() *cli.Command {
	flags := []cli.Flag{&cli.StringFlag{Name: "config", Usage: "YAML config file (keys as in sessctl.example.yaml)", EnvVars: []string{"SESSCTL_CONFIG"}}, quietFlag}
	for _, k := range config.Keys() {
		env := []string{k.Env()}
		// --central-dsn as well as --central_dsn.
		var alias []string
		if a := strings.ReplaceAll(k.Name, "_", "-"); a != k.Name {
			alias = []string{a}
		}
		if k.List {
			flags = append(flags, &cli.StringSliceFlag{Name: k.Name, Aliases: alias, Usage: k.Usage, EnvVars: env})
		} else {
			flags = append(flags, &cli.StringFlag{Name: k.Name, Aliases: alias, Usage: k.Usage, EnvVars: env})
		}
	}
	return &cli.Command{
		Name:  "serve",
		Usage: "run the proxy (embedded defaults; CA, database and a runner token are created on first run)",
		Flags: flags,
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Quiet = c.Bool("quiet")
			if err := server.Run(ctx, cfg, newLogger(cfg)); err != nil {
				return cli.Exit("sessctl: "+err.Error(), 1)
			}
			return nil
		},
	}
}

// loadConfig layers the defaults, the config file, then flags and
// SESSCTL_* environment variables.
func loadConfig(c *cli.Context) (*config.Config, error) {
	cfg := config.Default()
	if path := c.String("config"); path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	}
	for _, k := range config.Keys() {
		if !c.IsSet(k.Name) {
			continue
		}
		vals := []string{c.String(k.Name)}
		if k.List {
			vals = c.StringSlice(k.Name)
		}
		if err := cfg.Set(k.Name, vals); err != nil {
			return nil, err
		}
	}
	if err := cfg.Resolve(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
