//go:build !nostepca

package command

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessctl/sessctl/ca/stepca"
	"github.com/urfave/cli/v2"
)

// caEnrollCommand is "sessctl ca enroll": obtain sessctl's certificates
// from an existing step-ca instead of a CA of its own.
func caEnrollCommand() *cli.Command {
	return &cli.Command{
		Name:  "enroll",
		Usage: "obtain the interception certificates from an existing step-ca (leaf or intermediate mode)",
		Description: "leaf mode (default): sessctl holds no CA key; it obtains a certificate per intercepted host\n" +
			"from step-ca and renews it at 2/3 of its lifetime. intermediate mode: step-ca signs a\n" +
			"name-constrained intermediate CA (the provisioner needs a template that allows it; see\n" +
			"docs/ca.md) and sessctl mints leaves with it. Runners that trust step-ca's root need no change.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ca-url", Usage: "step-ca URL, e.g. https://ca.internal:9000", Required: true},
			&cli.StringFlag{Name: "root", Usage: "PEM file of step-ca's root certificate", Required: true},
			&cli.StringFlag{Name: "provisioner", Usage: "name of the JWK provisioner"},
			&cli.StringFlag{Name: "password-file", Usage: "file holding the provisioner's password (its path is recorded, never its content)"},
			&cli.StringFlag{
				Name:    "token",
				Usage:   "one-time token from 'step ca token' (prefer the environment variable: it stays out of the process list)",
				EnvVars: []string{"SESSCTL_STEPCA_TOKEN"},
			},
			&cli.StringFlag{Name: "mode", Usage: "leaf or intermediate", Value: string(stepca.ModeLeaf)},
			&cli.StringFlag{Name: "dir", Usage: "CA directory to enroll", Value: "data/ca", EnvVars: []string{"SESSCTL_CA_DIR"}},
			&cli.StringSliceFlag{Name: "host", Usage: "intercepted host (repeatable; default: the token's names, else api.openai.com)"},
			&cli.DurationFlag{Name: "lifetime", Usage: "certificate lifetime to ask for (default: the provisioner's)"},
			&cli.BoolFlag{Name: "force", Usage: "intermediate mode: replace a CA already in --dir"},
			&cli.DurationFlag{Name: "timeout", Usage: "timeout of one request to step-ca", Value: stepca.DefaultTimeout},
		},
		Action: caEnroll,
	}
}

// caEnroll is "sessctl ca enroll".
func caEnroll(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("sessctl ca enroll: unexpected argument %q", c.Args().First()), 2)
	}
	mode := stepca.Mode(c.String("mode"))
	if mode != stepca.ModeLeaf && mode != stepca.ModeIntermediate {
		return cli.Exit(fmt.Sprintf("sessctl ca enroll: --mode must be leaf or intermediate, not %q", c.String("mode")), 2)
	}
	if c.String("password-file") == "" && c.String("token") == "" {
		return cli.Exit("sessctl ca enroll: give --password-file (with --provisioner) or --token", 2)
	}
	dir := c.String("dir")
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := stepca.Enroll(c.Context, stepca.EnrollOptions{
		CAURL:        c.String("ca-url"),
		RootFile:     c.String("root"),
		Dir:          dir,
		Mode:         mode,
		Provisioner:  c.String("provisioner"),
		PasswordFile: c.String("password-file"),
		Token:        c.String("token"),
		Hosts:        c.StringSlice("host"),
		Lifetime:     c.Duration("lifetime"),
		Force:        c.Bool("force"),
		Timeout:      c.Duration("timeout"),
		Logger:       log,
	})
	if err != nil {
		return err
	}
	w := c.App.ErrWriter
	switch res.Mode {
	case stepca.ModeLeaf:
		fmt.Fprintf(w, "enrolled %s in leaf mode with %s; sessctl holds no CA key\n", dir, c.String("ca-url"))
		for _, cert := range res.Certificates {
			fmt.Fprintf(w, "  %s: certificate until %s (renewed at 2/3 of its lifetime)\n",
				strings.Join(cert.DNSNames, ", "), cert.NotAfter.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, "kept in %s\n", filepath.Join(dir, "leaves"))
	case stepca.ModeIntermediate:
		ic := res.Certificates[0]
		fmt.Fprintf(w, "enrolled %s in intermediate mode: %s/ca.crt (%q, permits %s) until %s; key %s/ca.key (0600)\n",
			dir, dir, ic.Subject.CommonName, strings.Join(ic.PermittedDNSDomains, ", "), ic.NotAfter.UTC().Format(time.RFC3339), dir)
		fmt.Fprintf(w, "enroll again (with --force) before that date\n")
	}
	fmt.Fprintf(w, "runners trust step-ca's root (%s/root.crt); those that already trust it need no change\n", dir)
	return nil
}
