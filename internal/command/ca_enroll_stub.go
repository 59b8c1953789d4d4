//go:build nostepca

package command

import (
	"github.com/sessctl/sessctl/internal/server"
	"github.com/urfave/cli/v2"
)

// caEnrollCommand is "sessctl ca enroll" in a build without step-ca: it
// only says so.
func caEnrollCommand() *cli.Command {
	return &cli.Command{
		Name:            "enroll",
		Usage:           "obtain the interception certificates from an existing step-ca (not in this build)",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return cli.Exit("sessctl ca enroll: "+server.ErrNoStepCA.Error(), 2)
		},
	}
}
