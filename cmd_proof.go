package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/sessctl/sessctl/store"
	"github.com/urfave/cli/v2"
)

// proofCommand is "sessctl proof --db FILE SEQ": print a self-contained
// inclusion proof bundle for one record.
func proofCommand() *cli.Command {
	return &cli.Command{
		Name:      "proof",
		Usage:     "print an inclusion proof bundle for one record (check it with sessctl verify --proof)",
		ArgsUsage: "SEQ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "session log `FILE`", Required: true},
			&cli.StringFlag{Name: "out", Usage: "write the bundle to `FILE` instead of stdout"},
		},
		Action: func(c *cli.Context) error {
			seq, err := strconv.ParseUint(c.Args().First(), 10, 63)
			if c.NArg() != 1 || err != nil {
				return cli.Exit("sessctl proof: want one record sequence number", 2)
			}
			r, err := store.OpenReader(c.String("db"))
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl proof: %v", err), 2)
			}
			defer r.Close()
			bundle, err := r.Prove(seq)
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl proof: %v", err), 1)
			}
			if out := c.String("out"); out != "" {
				if err := os.WriteFile(out, bundle, 0o644); err != nil {
					return cli.Exit(fmt.Sprintf("sessctl proof: %v", err), 2)
				}
				return nil
			}
			_, err = c.App.Writer.Write(bundle)
			return err
		},
	}
}
