package command

import (
	"fmt"

	"github.com/sessctl/sessctl/store"
	"github.com/urfave/cli/v2"
)

// checkpointCommand is "sessctl checkpoint --db FILE": print the latest
// signed checkpoint with its witnesses' cosignatures, the text an auditor
// keeps.
func checkpointCommand() *cli.Command {
	return &cli.Command{
		Name:  "checkpoint",
		Usage: "print the latest signed checkpoint of a session log (with its witnesses' cosignatures)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "session log `FILE`", Required: true},
		},
		Action: func(c *cli.Context) error {
			r, err := store.OpenReader(c.String("db"))
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl checkpoint: %v", err), 2)
			}
			defer r.Close()
			msg, _, err := r.LatestCosigned()
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl checkpoint: %v", err), 2)
			}
			_, err = c.App.Writer.Write(msg)
			return err
		},
	}
}
