package command

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
)

func sessionsSearchCommand() *cli.Command {
	return &cli.Command{
		Name:  "search",
		Usage: "list the records through which a secret passed (masked), without the log holding it",
		Description: "The file holds one secret per line. Each record keeps an HMAC of every value it masked,\n" +
			"under a key of this log; a secret is found when its HMAC is among them. Exit 0 when found, 1 when not.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "db", Value: "data/sessions.db", Usage: "session database file", EnvVars: []string{"SESSCTL_DB"}},
			&cli.StringFlag{Name: "secret-file", Required: true, Usage: "file with the secret(s) to look for, one per line"},
		},
		Action: func(c *cli.Context) error {
			secrets, err := readSecrets(c.String("secret-file"))
			if err != nil {
				return cli.Exit("sessctl sessions search: "+err.Error(), 2)
			}
			r, err := store.OpenReader(c.String("db"))
			if err != nil {
				return cli.Exit("sessctl sessions search: "+err.Error(), 2)
			}
			defer r.Close()
			key, err := r.SecretKey()
			if err != nil {
				return cli.Exit("sessctl sessions search: "+err.Error(), 2)
			}
			sums := make([]string, len(secrets))
			for i, s := range secrets {
				sums[i] = rules.SecretHMAC(key, []byte(s))
			}
			found := 0
			err = r.List(store.Filter{}, func(rec *store.Record) error {
				for i, sum := range sums {
					if slices.Contains(rec.SecretHMACs, sum) {
						found++
						fmt.Fprintf(c.App.Writer, "secret %d: record %d %s %s %s%s (%s)\n", i+1, rec.Seq,
							rec.Start.Format("2006-01-02T15:04:05Z07:00"), rec.Method, rec.Host, rec.Path, orDash(rec.Identity.Runner))
					}
				}
				return nil
			})
			if err != nil {
				return cli.Exit("sessctl sessions search: "+err.Error(), 2)
			}
			if found == 0 {
				return cli.Exit("not found: no record masked these secrets", 1)
			}
			return nil
		},
	}
}

// readSecrets reads one secret per non-empty line.
func readSecrets(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if s := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no secret", path)
	}
	return out, nil
}
