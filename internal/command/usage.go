package command

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

func usageCommand() *cli.Command {
	return &cli.Command{
		Name:  "usage",
		Usage: "total requests and tokens by repository, workflow, runner, actor, model or day",
		Description: "Reads the database file given by --db, or a running sessctl through its admin API\n" +
			"when --admin (or SESSCTL_ADMIN_URL) is set and --db is not. Token counts are the\n" +
			"providers' own, summed. Example: sessctl usage --by repo,model --since 7d",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "db", Value: "data/sessions.db", Usage: "session database file (of a stopped sessctl, or a snapshot)", EnvVars: []string{"SESSCTL_DB"}},
			&cli.StringFlag{Name: "by", Usage: "group by these, comma-separated: repo, workflow, runner, actor, model, day"},
			&cli.StringFlag{Name: "since", Usage: "only records since (duration like 24h or 7d, or RFC 3339)"},
			&cli.StringFlag{Name: "until", Usage: "only records before (duration or RFC 3339)"},
			&cli.StringFlag{Name: "repo", Usage: "only this repository (claim repository, GitLab project_path)"},
			&cli.StringFlag{Name: "workflow", Usage: "only this workflow (claim workflow)"},
			&cli.StringFlag{Name: "runner", Usage: "only this runner (runner tokens)"},
			&cli.StringFlag{Name: "actor", Usage: "only this CI actor (claim actor, GitLab user_login)"},
			&cli.StringFlag{Name: "model", Usage: "only this model"},
			&cli.BoolFlag{Name: "json", Usage: "JSON output: one array of rows"},
			&cli.BoolFlag{Name: "csv", Usage: "CSV output with a header line"},
		}, adminFlags()...),
		Action: usageTotals,
	}
}

// usageSource totals usage. A log file and a running sessctl's admin API
// are the sources today; the fleet's central database (--central) is to
// be one more implementation of this interface.
type usageSource interface {
	Usage(ctx context.Context, q query.UsageQuery) ([]query.UsageRow, error)
}

// fileUsage totals the usage of a log file.
type fileUsage struct{ r *store.Reader }

func (f fileUsage) Usage(_ context.Context, q query.UsageQuery) ([]query.UsageRow, error) {
	return query.Usage(f.r, q)
}

func usageTotals(c *cli.Context) error {
	if c.Bool("json") && c.Bool("csv") {
		return errors.New("--json and --csv: choose one")
	}
	now := time.Now()
	var q query.UsageQuery
	var err error
	if q.Since, err = query.ParseTime(c.String("since"), now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if q.Until, err = query.ParseTime(c.String("until"), now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if q.By, err = query.ParseDims(c.String("by")); err != nil {
		return fmt.Errorf("--%w", err)
	}
	q.Repo, q.Workflow, q.Runner = c.String("repo"), c.String("workflow"), c.String("runner")
	q.Actor, q.Model = c.String("actor"), c.String("model")
	src, err := openSource(c)
	if err != nil {
		return err
	}
	defer src.Close()
	var us usageSource = src.client
	if src.client == nil {
		us = fileUsage{src.reader}
	}
	rows, err := us.Usage(c.Context, q)
	if err != nil {
		return err
	}
	w := c.App.Writer
	switch {
	case c.Bool("json"):
		if rows == nil {
			rows = []query.UsageRow{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case c.Bool("csv"):
		return writeUsageCSV(w, q.By, rows)
	}
	return writeUsageTable(w, q.By, rows)
}

// usageColumns are the figures of a usage row, after its dimensions.
var usageColumns = []string{"requests", "refused", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens"}

func usageFigures(r *query.UsageRow) []string {
	out := make([]string, 0, len(usageColumns))
	for _, n := range []int64{r.Requests, r.Refused, r.Input, r.CachedInput, r.Output, r.Reasoning, r.Total} {
		out = append(out, strconv.FormatInt(n, 10))
	}
	return out
}

func writeUsageCSV(w io.Writer, by []string, rows []query.UsageRow) error {
	cw := csv.NewWriter(w)
	cw.Write(append(append([]string(nil), by...), usageColumns...))
	for i := range rows {
		var rec []string
		for _, d := range by {
			rec = append(rec, rows[i].Dim(d))
		}
		cw.Write(append(rec, usageFigures(&rows[i])...))
	}
	cw.Flush()
	return cw.Error()
}

func writeUsageTable(w io.Writer, by []string, rows []query.UsageRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"REQUESTS", "REFUSED", "INPUT", "CACHED", "OUTPUT", "REASONING", "TOTAL"}
	line := func(dims, figs []string) {
		for _, d := range dims {
			fmt.Fprintf(tw, "%s\t", d)
		}
		for _, f := range figs {
			fmt.Fprintf(tw, "%s\t", f)
		}
		fmt.Fprintln(tw)
	}
	var dh []string
	for _, d := range by {
		if d == "repo" {
			d = "repository"
		}
		dh = append(dh, strings.ToUpper(d))
	}
	line(dh, head)
	for i := range rows {
		var dims []string
		for _, d := range by {
			dims = append(dims, rows[i].Dim(d))
		}
		line(dims, usageFigures(&rows[i]))
	}
	if len(rows) == 0 {
		fmt.Fprintln(tw, "(no requests in this range)")
	}
	return tw.Flush()
}
