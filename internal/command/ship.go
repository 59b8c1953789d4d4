package command

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/store"
)

// shipCommand is "sessctl ship": ship a stopped replica's log to the
// fleet's PostgreSQL once, e.g. its shutdown record and final checkpoint
// before the replica is retired. A running serve with central_dsn ships
// on its own.
func shipCommand() *cli.Command {
	return &cli.Command{
		Name:  "ship",
		Usage: "ship a stopped replica's log (records, bodies, checkpoints) to the fleet's PostgreSQL once",
		Description: "Ships what PostgreSQL does not have yet of the log in --db and exits: 0 when the database holds " +
			"the whole log, 1 when the database differs from the log (nothing is overwritten; run sessctl verify --central), " +
			"2 when it could not ship (unreadable log, PostgreSQL unreachable).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "session log `FILE` (serve must be stopped: it holds the file)", Required: true},
			&cli.StringFlag{Name: "central", Usage: "PostgreSQL `DSN` (\"env\": $SESSCTL_CENTRAL_DSN)", Required: true},
		},
		Action: func(c *cli.Context) error {
			dsn := c.String("central")
			if dsn == "env" {
				if dsn = os.Getenv("SESSCTL_CENTRAL_DSN"); dsn == "" {
					return cli.Exit("sessctl ship: --central env: SESSCTL_CENTRAL_DSN is not set", 2)
				}
			}
			r, err := store.OpenReader(c.String("db"))
			if err != nil {
				return cli.Exit("sessctl ship: "+err.Error(), 2)
			}
			defer r.Close()
			db, err := central.Open(c.Context, dsn)
			if err != nil {
				return cli.Exit("sessctl ship: "+err.Error(), 2)
			}
			defer db.Close()
			n, err := central.NewShipper(db, r, central.ShipperOptions{}).ShipAll(c.Context)
			switch {
			case errors.Is(err, central.ErrDiverged):
				return cli.Exit("sessctl ship: "+err.Error(), 1)
			case err != nil:
				return cli.Exit(fmt.Sprintf("sessctl ship: %v (the database holds %d records of %s)", err, n, r.Origin()), 2)
			}
			fmt.Fprintf(c.App.Writer, "ok: origin %s: %d records in the database\n", r.Origin(), n)
			return nil
		},
	}
}
