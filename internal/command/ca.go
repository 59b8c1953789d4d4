package command

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/proxy"
)

// defaultRetireWindow is how long after a promotion the previous CA stays
// in the exported bundle when --retire-after is not given.
const defaultRetireWindow = 7 * 24 * time.Hour

// caCommand is "sessctl ca": create, export, rotate and promote the
// interception CA.
func caCommand() *cli.Command {
	// Each subcommand gets its own flag values: urfave/cli keeps parse
	// state in them.
	dirFlag := func() cli.Flag {
		return &cli.StringFlag{
			Name:    "dir",
			Usage:   "CA directory",
			Value:   "data/ca",
			EnvVars: []string{"SESSCTL_CA_DIR"},
		}
	}
	hostFlag := func(usage string) cli.Flag {
		return &cli.StringSliceFlag{Name: "host", Usage: usage}
	}
	return &cli.Command{
		Name:  "ca",
		Usage: "manage the interception CA that runners trust",
		Subcommands: []*cli.Command{
			caEnrollCommand(),
			{
				Name:      "init",
				Usage:     "create a name-constrained CA (ca.crt, ca.key)",
				ArgsUsage: " ",
				Flags: []cli.Flag{dirFlag(),
					hostFlag("host the CA may issue for (repeatable; default: every intercepted host of --config, else api.openai.com); its name constraints permit only these"),
					&cli.StringFlag{Name: "config", Usage: "without --host, constrain the CA to this configuration's intercepted hosts (and " + proxy.TokenHost + "), as the first run of serve does"},
					&cli.BoolFlag{Name: "force", Usage: "replace an existing CA (runners trusting it will fail)"},
				},
				Action: func(c *cli.Context) error {
					dir := c.String("dir")
					hosts := c.StringSlice("host")
					if path := c.String("config"); path != "" && len(hosts) == 0 {
						cfg, err := config.Load(path)
						if err != nil {
							return cli.Exit("sessctl ca init: "+err.Error(), 2)
						}
						if err := cfg.Resolve(); err != nil {
							return cli.Exit("sessctl ca init: "+err.Error(), 2)
						}
						hosts = append(append(hosts, cfg.Intercept...), proxy.TokenHost)
					}
					opts := ca.InitOptions{Hosts: hosts, Force: c.Bool("force")}
					if err := ca.Init(dir, opts); err != nil {
						return err
					}
					fmt.Fprintf(c.App.ErrWriter, "CA written to %s/ca.crt (key %s/ca.key, mode 0600)\n", dir, dir)
					return nil
				},
			},
			{
				Name:      "export",
				Usage:     "print the PEM certificates runners should trust (current, next, not yet retired old)",
				ArgsUsage: " ",
				Flags:     []cli.Flag{dirFlag()},
				Action: func(c *cli.Context) error {
					b, err := ca.Bundle(c.String("dir"), time.Now())
					if err != nil {
						return err
					}
					_, err = c.App.Writer.Write(b)
					return err
				},
			},
			{
				Name:      "rotate",
				Usage:     "create the next CA beside the current one",
				ArgsUsage: " ",
				Flags: []cli.Flag{dirFlag(),
					hostFlag("host the next CA may issue for (repeatable; default: the current CA's)"),
					&cli.BoolFlag{Name: "force", Usage: "replace a pending next CA"},
				},
				Action: func(c *cli.Context) error {
					dir := c.String("dir")
					opts := ca.InitOptions{Hosts: c.StringSlice("host"), Force: c.Bool("force")}
					if err := ca.Rotate(dir, opts); err != nil {
						return err
					}
					fmt.Fprintf(c.App.ErrWriter, "next CA written to %s/next/ca.crt\n"+
						"give runners the bundle from 'sessctl ca export --dir %s', then run 'sessctl ca promote --dir %s'\n", dir, dir, dir)
					return nil
				},
			},
			{
				Name:      "promote",
				Usage:     "switch minting to the next CA; keep the old one trusted until --retire-after",
				ArgsUsage: " ",
				Flags: []cli.Flag{dirFlag(),
					&cli.StringFlag{Name: "retire-after", Usage: "date (YYYY-MM-DD or RFC 3339) until which the old CA stays in the bundle (default: in 7 days)"},
				},
				Action: func(c *cli.Context) error {
					dir := c.String("dir")
					retire := time.Now().Add(defaultRetireWindow)
					if s := c.String("retire-after"); s != "" {
						t, err := parseDate(s)
						if err != nil {
							return err
						}
						retire = t
					}
					if err := ca.Promote(dir, retire); err != nil {
						return err
					}
					fmt.Fprintf(c.App.ErrWriter, "next CA promoted; the previous one stays in the bundle until %s\n"+
						"a running sessctl switches after a restart or reload\n", retire.UTC().Format(time.RFC3339))
					return nil
				},
			},
		},
	}
}

// parseDate accepts RFC 3339 or a plain date (midnight UTC).
func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--retire-after: bad date %q: want YYYY-MM-DD or RFC 3339", s)
	}
	return t, nil
}
