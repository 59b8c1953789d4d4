package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/store"
)

func sessionsCommand() *cli.Command {
	dbFlag := &cli.StringFlag{Name: "db", Value: "data/sessions.db", Usage: "session database file", EnvVars: []string{"SESSCTL_DB"}}
	return &cli.Command{
		Name:  "sessions",
		Usage: "list and show recorded sessions",
		Subcommands: []*cli.Command{
			{
				Name:  "ls",
				Usage: "list records, newest first",
				Flags: []cli.Flag{
					dbFlag,
					&cli.StringFlag{Name: "since", Usage: "only records since (duration like 24h or 7d, or RFC 3339)"},
					&cli.StringFlag{Name: "until", Usage: "only records before (duration or RFC 3339)"},
					&cli.StringFlag{Name: "runner", Usage: "runner name"},
					&cli.StringFlag{Name: "outcome", Usage: "outcome (forwarded, blocked, unauthenticated, ...)"},
					&cli.StringFlag{Name: "host", Usage: "host"},
					&cli.StringFlag{Name: "kind", Usage: "record kind (exchange, refused, approval, ...)"},
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many records (0: all)"},
					&cli.BoolFlag{Name: "json", Usage: "one JSON record per line"},
				},
				Action: sessionsLs,
			},
			{
				Name:      "show",
				Usage:     "show one record with its prompt and answer",
				ArgsUsage: "ID (session id or sequence number)",
				Flags:     []cli.Flag{dbFlag, &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}},
				Action:    sessionsShow,
			},
		},
	}
}

// timeArg parses a duration back from now, or an RFC 3339 time.
func timeArg(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration nor an RFC 3339 time", s)
	}
	return time.Now().Add(-d), nil
}

func sessionsLs(c *cli.Context) error {
	since, err := timeArg(c.String("since"))
	if err != nil {
		return cli.Exit("sessctl sessions ls: --since: "+err.Error(), 2)
	}
	until, err := timeArg(c.String("until"))
	if err != nil {
		return cli.Exit("sessctl sessions ls: --until: "+err.Error(), 2)
	}
	r, err := store.OpenReader(c.String("db"))
	if err != nil {
		return cli.Exit("sessctl sessions ls: "+err.Error(), 2)
	}
	defer r.Close()
	f := store.Filter{Since: since, Until: until, Runner: c.String("runner"), Outcome: c.String("outcome"),
		Host: c.String("host"), Kind: c.String("kind"), Limit: c.Int("limit")}
	w := os.Stdout
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		return r.List(f, func(rec *store.Record) error { return enc.Encode(rec) })
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tRUNNER\tREQUEST\tSTATUS\tOUTCOME\tSESSION")
	err = r.List(f, func(rec *store.Record) error {
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Seq, rec.Start.Local().Format("2006-01-02 15:04:05"),
			orDash(who(rec.Identity)), orDash(strings.TrimSpace(rec.Method+" "+rec.Host+rec.Path)), status(rec.Status),
			orDash(rec.Outcome), orDash(rec.SessionID))
		return err
	})
	tw.Flush()
	return err
}

func sessionsShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("sessctl sessions show: want one ID (session id or sequence number)", 2)
	}
	r, err := store.OpenReader(c.String("db"))
	if err != nil {
		return cli.Exit("sessctl sessions show: "+err.Error(), 2)
	}
	defer r.Close()
	rec, req, resp, err := r.Get(c.Args().First())
	if err != nil {
		return cli.Exit("sessctl sessions show: "+err.Error(), 1)
	}
	if c.Bool("json") {
		return json.NewEncoder(os.Stdout).Encode(struct {
			*store.Record
			Prompt *string `json:"prompt"`
			Answer *string `json:"answer"`
		}{rec, strPtr(req), strPtr(resp)})
	}
	return printRecord(os.Stdout, rec, req, resp)
}

func printRecord(w io.Writer, rec *store.Record, req, resp []byte) error {
	fmt.Fprintf(w, "record %d  %s  session %s\n", rec.Seq, rec.Kind, rec.SessionID)
	fmt.Fprintf(w, "time      %s .. %s (%s)\n", rec.Start.Format(time.RFC3339Nano), rec.End.Format(time.RFC3339Nano), rec.End.Sub(rec.Start).Round(time.Millisecond))
	fmt.Fprintf(w, "identity  %s (%s)\n", orDash(who(rec.Identity)), orDash(rec.Identity.Method))
	for _, k := range sortedKeys(rec.Identity.Claims) {
		fmt.Fprintf(w, "  claim   %s=%s\n", k, rec.Identity.Claims[k])
	}
	for _, k := range sortedKeys(rec.Meta) {
		fmt.Fprintf(w, "  meta    %s=%s (client-declared, unverified)\n", k, rec.Meta[k])
	}
	fmt.Fprintf(w, "conn      %s %s %s\n", rec.Conn.Mode, rec.Conn.Client, rec.Conn.ID)
	fmt.Fprintf(w, "request   %s %s%s  model %s\n", rec.Method, rec.Host, rec.Path, orDash(rec.Model))
	fmt.Fprintf(w, "result    %s %s %s\n", status(rec.Status), orDash(rec.Outcome), rec.Reason)
	for _, h := range rec.Rules {
		fmt.Fprintf(w, "rule      %s %s on %s x%d\n", h.Name, h.Action, h.Scope, h.Count)
	}
	if a := rec.Approval; a != nil {
		fmt.Fprintf(w, "approval  %s %s by %s at %s %s\n", a.ID, a.Decision, orDash(a.By), a.At.Format(time.RFC3339), a.Reason)
	}
	fmt.Fprintf(w, "recording %s, %d deltas\n", orDash(rec.Recording), len(rec.Deltas))
	if req != nil {
		fmt.Fprintf(w, "--- prompt (%d bytes)\n%s\n", len(req), req)
	}
	if resp != nil {
		fmt.Fprintf(w, "--- answer (%d bytes)\n%s\n", len(resp), resp)
	}
	return nil
}

func who(id store.Identity) string {
	switch {
	case id.Runner != "":
		return id.Runner
	case id.Claims["repository"] != "":
		return id.Claims["repository"]
	case id.Subject != "":
		return id.Subject
	}
	return ""
}

func status(s int) string {
	if s == 0 {
		return "-"
	}
	return fmt.Sprint(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func strPtr(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
