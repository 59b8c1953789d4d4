package command

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sessctl/sessctl/store"
	"github.com/urfave/cli/v2"
)

// proofCommand is "sessctl proof --db FILE SEQ [--out F]": print a
// self-contained inclusion proof bundle for one record.
func proofCommand() *cli.Command {
	return &cli.Command{
		Name:      "proof",
		Usage:     "print an inclusion proof bundle for one record (check it with sessctl verify --proof)",
		ArgsUsage: "SEQ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "session log `FILE`"},
			&cli.StringFlag{Name: "out", Usage: "write the bundle to `FILE` instead of stdout"},
			&cli.StringFlag{Name: "format", Value: "sessctl", Usage: "sessctl (sessctl/proof/v1 bundle) or c2sp (c2sp.org/tlog-proof@v1 with the witnesses' cosignatures; the leaf is its extra data)"},
		},
		Action: func(c *cli.Context) error {
			db, out, format := c.String("db"), c.String("out"), c.String("format")
			// urfave/cli stops parsing flags at the first argument; accept
			// "SEQ --out F" too.
			var rest []string
			args := c.Args().Slice()
			for i := 0; i < len(args); i++ {
				name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
				if !strings.HasPrefix(args[i], "-") || (name != "db" && name != "out" && name != "format") {
					rest = append(rest, args[i])
					continue
				}
				if !hasVal {
					if i+1 >= len(args) {
						return cli.Exit("sessctl proof: --"+name+" needs a value", 2)
					}
					i++
					val = args[i]
				}
				switch name {
				case "db":
					db = val
				case "out":
					out = val
				default:
					format = val
				}
			}
			if db == "" {
				return cli.Exit("sessctl proof: --db FILE is required", 2)
			}
			prove := (*store.Reader).Prove
			switch format {
			case "sessctl":
			case "c2sp":
				prove = (*store.Reader).ProveTLog
			default:
				return cli.Exit(fmt.Sprintf("sessctl proof: --format %q: want sessctl or c2sp", format), 2)
			}
			if len(rest) != 1 {
				return cli.Exit("sessctl proof: want one record sequence number", 2)
			}
			seq, err := strconv.ParseUint(rest[0], 10, 63)
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl proof: bad sequence number %q", rest[0]), 2)
			}
			r, err := store.OpenReader(db)
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl proof: %v", err), 2)
			}
			defer r.Close()
			bundle, err := prove(r, seq)
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl proof: %v", err), 1)
			}
			if out != "" {
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
