package command

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/config"
)

// verifyCentral is sessctl verify --central DSN: one line per origin,
// exit 0 all good, 1 tampering, 2 cannot check.
func verifyCentral(c *cli.Context) error {
	fail := func(format string, args ...any) error {
		return cli.Exit("sessctl verify: "+fmt.Sprintf(format, args...), 2)
	}
	dsn := c.String("central")
	if dsn == "env" {
		dsn = os.Getenv("SESSCTL_CENTRAL_DSN")
		if dsn == "" {
			return fail("--central env: SESSCTL_CENTRAL_DSN is not set")
		}
	}
	if len(c.StringSlice("db")) > 0 || c.IsSet("proof") || c.IsSet("export") || c.IsSet("admin") || c.IsSet("checkpoint") {
		return fail("--central checks the database only: leave out --db, --proof, --export, --admin and --checkpoint")
	}
	keys := map[string]string{}
	if f := c.String("config"); f != "" {
		cfg, err := config.Load(f)
		if err != nil {
			return fail("%v", err)
		}
		for o, k := range cfg.CentralOrigins {
			if err := config.CheckOriginKey(o, k); err != nil {
				return fail("%s: central_origins: %v", f, err)
			}
			keys[o] = k
		}
	}
	for _, v := range c.StringSlice("pubkey") {
		origin, key, err := originKey(v)
		if err != nil {
			return fail("--pubkey: %v", err)
		}
		if k, ok := keys[origin]; ok && k != key {
			return fail("--pubkey: origin %s is pinned to two different keys", origin)
		}
		keys[origin] = key
	}
	db, err := central.Open(c.Context, dsn)
	if err != nil {
		return fail("%v", err)
	}
	defer db.Close()
	reps, err := central.Verify(c.Context, db, central.VerifyOptions{Origins: c.StringSlice("origin"), Keys: keys})
	if err != nil {
		return fail("could not verify: %v", err)
	}
	if len(reps) == 0 {
		return fail("the database holds no shipped log")
	}
	code := 0
	var lines []string
	for _, r := range reps {
		code = max(code, r.Status())
		lines = append(lines, r.Line())
	}
	if c.Bool("json") {
		if err := json.NewEncoder(c.App.Writer).Encode(reps); err != nil {
			return cli.Exit(err.Error(), 2)
		}
	} else {
		for _, r := range reps {
			if r.Status() != 0 || r.Report == nil {
				continue
			}
			if !r.KeyPinned {
				fmt.Fprintf(c.App.ErrWriter, "note: origin %s: key not pinned; checked against the key first seen on %s (pin it with --pubkey or central_origins)\n", r.Origin, r.FirstSeen.UTC().Format("2006-01-02T15:04:05Z"))
			}
			if r.Unvouched > 0 {
				fmt.Fprintf(c.App.ErrWriter, "note: origin %s: the newest %d records come after the newest shipped checkpoint: only the hash chain vouches for them\n", r.Origin, r.Unvouched)
			}
		}
	}
	switch {
	case c.Bool("json") && code != 0:
		return cli.Exit("", code)
	case c.Bool("json"):
		return nil
	case code != 0:
		// The good lines on standard output, the whole report on the exit message.
		return cli.Exit(strings.Join(lines, "\n"), code)
	}
	fmt.Fprintln(c.App.Writer, strings.Join(lines, "\n"))
	return nil
}

// originKey reads a --pubkey value: ORIGIN=KEY, KEY, or a file holding
// either. A sessctl log's key is named after its origin.
func originKey(v string) (origin, key string, err error) {
	if data, rerr := os.ReadFile(v); rerr == nil {
		v = strings.TrimSpace(string(data))
	}
	// A key may end in '=' (base64), and an origin has no '+'.
	if o, k, ok := strings.Cut(v, "="); ok && !strings.Contains(o, "+") {
		if err := config.CheckOriginKey(o, k); err != nil {
			return "", "", err
		}
		return o, k, nil
	}
	origin, err = central.OriginOfKey(v)
	if err != nil {
		return "", "", err
	}
	return origin, v, nil
}
