//go:build nostepca

package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/proxy"
	"github.com/urfave/cli/v2"
)

// errNoStepCA says that this binary cannot use step-ca.
var errNoStepCA = errors.New("this sessctl was built without step-ca support (build tag nostepca); rebuild without -tags nostepca")

// caEnrollCommand is "sessctl ca enroll" in a build without step-ca: it
// only says so.
func caEnrollCommand() *cli.Command {
	return &cli.Command{
		Name:            "enroll",
		Usage:           "obtain the interception certificates from an existing step-ca (not in this build)",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return cli.Exit("sessctl ca enroll: "+errNoStepCA.Error(), 2)
		},
	}
}

// openStepCA refuses a directory enrolled with step-ca, which this build
// cannot use; ok is false otherwise.
func openStepCA(dir string, _ ca.LoadOptions) (proxy.Certs, io.Closer, bool, error) {
	if stepcaEnrolled(dir) {
		return nil, nil, true, fmt.Errorf("%s is enrolled with step-ca: %w", dir, errNoStepCA)
	}
	return nil, nil, false, nil
}
