package command

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/progress"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

// sessionsCommand queries the session log: from the database file (--db,
// which a running sessctl holds locked) or from a running sessctl's admin
// API (--admin URL --token T).
func sessionsCommand() *cli.Command {
	source := func() []cli.Flag {
		return append([]cli.Flag{
			&cli.StringFlag{Name: "db", Value: "data/sessions.db", Usage: "session database file (of a stopped sessctl, or a snapshot)", EnvVars: []string{"SESSCTL_DB"}},
			&cli.StringFlag{Name: "central", Usage: "PostgreSQL DSN of a fleet: query the logs every replica shipped there"},
			&cli.StringFlag{Name: "origin", Usage: "with --central: only the log of this origin (hostname/log-uuid)"},
		}, adminFlags()...)
	}
	filters := []cli.Flag{
		&cli.StringFlag{Name: "since", Usage: "only records since (duration like 24h or 7d, or RFC 3339)"},
		&cli.StringFlag{Name: "until", Usage: "only records before (duration or RFC 3339)"},
		&cli.StringFlag{Name: "runner", Usage: "runner name (runner tokens)"},
		&cli.StringFlag{Name: "repo", Usage: "repository claim, such as acme/api (GitLab: project_path)"},
		&cli.StringFlag{Name: "run", Usage: "CI run id claim (GitLab: pipeline_id)"},
		&cli.StringFlag{Name: "sha", Usage: "commit claim (full, or at least 7 hex digits)"},
		&cli.StringFlag{Name: "actor", Usage: "CI actor claim (GitLab: user_login)"},
		&cli.StringFlag{Name: "outcome", Usage: "outcome (forwarded, blocked, denied, unauthenticated, approval_denied, ...)"},
		&cli.StringFlag{Name: "rule", Usage: "a rule that fired"},
		&cli.StringFlag{Name: "host", Usage: "upstream host"},
		&cli.StringFlag{Name: "provider", Usage: "provider the exchange spoke to (openai, anthropic, azure-openai)"},
		&cli.StringFlag{Name: "kind", Usage: "record kind (exchange, refused, approval, ...)"},
		&cli.StringFlag{Name: "session", Usage: "session id"},
		&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many records (0: all)"},
		&cli.BoolFlag{Name: "json", Usage: "one JSON record per line"},
	}
	return &cli.Command{
		Name:  "sessions",
		Usage: "find, show and export recorded sessions",
		Description: "Reads the database file given by --db, or a running sessctl through its admin API\n" +
			"when --admin (or SESSCTL_ADMIN_URL) is set and --db is not, or a fleet's PostgreSQL\n" +
			"with --central DSN (every replica's shipped log; records are named SEQ@ORIGIN).",
		Subcommands: []*cli.Command{
			sessionsSearchCommand(),
			{
				Name:   "ls",
				Usage:  "list records, newest first",
				Flags:  append(source(), filters...),
				Action: sessionsLs,
			},
			{
				Name:      "show",
				Usage:     "show one record with its prompt, answer and approval history",
				ArgsUsage: "ID (session id or sequence number)",
				Flags:     append(source(), &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}),
				Action:    sessionsShow,
			},
			{
				Name:  "export",
				Usage: "write records as JSON lines, in log order, each with its chain hash",
				Description: "Each line is {\"hash\": hex leaf hash, \"record\": the leaf's JSON as stored,\n" +
					"\"prompt\"/\"answer\" with --bodies}. hash = SHA-256 tlog record hash of\n" +
					"\"" + strings.TrimSuffix(store.LeafPrefix, "\n") + "\\n\" + record, so an export can be checked\n" +
					"against a signed checkpoint later. Streams in constant memory.",
				Flags: append(source(),
					&cli.Uint64Flag{Name: "from", Usage: "first sequence number (to continue an earlier export)"},
					&cli.IntFlag{Name: "limit", Usage: "at most this many records (0: to the end)"},
					&cli.BoolFlag{Name: "bodies", Usage: "include the stored (masked) prompt and answer"},
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write to this file instead of standard output"},
					quietFlag,
				),
				Action: sessionsExport,
			},
		},
	}
}

// sessionSource is where a sessions subcommand reads: the database file
// or the admin API.
type sessionSource struct {
	reader *store.Reader
	client *admin.Client
	fleet  *central.Fleet
}

func (s *sessionSource) Close() {
	if s.reader != nil {
		s.reader.Close()
	}
	if s.fleet != nil {
		s.fleet.Close()
	}
}

// local is the source read in this process: the database file or the
// fleet's PostgreSQL.
func (s *sessionSource) local() query.Source {
	if s.fleet != nil {
		return s.fleet
	}
	return s.reader
}

// openSource picks the fleet's PostgreSQL with --central, else the admin
// API when --admin is set and --db is not, else the database file.
func openSource(c *cli.Context) (*sessionSource, error) {
	if dsn := c.String("central"); dsn != "" {
		if c.IsSet("db") || c.IsSet("admin") {
			return nil, errors.New("--central reads the fleet's PostgreSQL: give it without --db or --admin")
		}
		f, err := central.OpenFleet(c.Context, dsn)
		if err != nil {
			return nil, err
		}
		if o := c.String("origin"); o != "" {
			f = f.Only(o)
		}
		return &sessionSource{fleet: f}, nil
	}
	if c.String("origin") != "" {
		return nil, errors.New("--origin needs --central")
	}
	if !c.IsSet("db") && c.String("admin") != "" {
		cl, err := adminClient(c)
		if err != nil {
			return nil, err
		}
		return &sessionSource{client: cl}, nil
	}
	r, err := store.OpenReader(c.String("db"))
	if err != nil {
		if _, serr := os.Stat(c.String("db")); serr == nil {
			// Most likely a running sessctl holds the file.
			return nil, fmt.Errorf("%w; to ask a running sessctl, use --admin URL --token T", err)
		}
		return nil, err
	}
	return &sessionSource{reader: r}, nil
}

// queryFlags reads the filters; relative times are resolved here so the
// server sees the same instants.
func queryFlags(c *cli.Context) (query.Query, error) {
	now := time.Now()
	since, err := query.ParseTime(c.String("since"), now)
	if err != nil {
		return query.Query{}, fmt.Errorf("--since: %w", err)
	}
	until, err := query.ParseTime(c.String("until"), now)
	if err != nil {
		return query.Query{}, fmt.Errorf("--until: %w", err)
	}
	if c.Int("limit") < 0 {
		return query.Query{}, errors.New("--limit: must not be negative")
	}
	return query.Query{
		Since: since, Until: until,
		Runner: c.String("runner"), Repo: c.String("repo"), Run: c.String("run"), SHA: c.String("sha"),
		Actor: c.String("actor"), Outcome: c.String("outcome"), Rule: c.String("rule"), Host: c.String("host"), Provider: c.String("provider"),
		Kind: c.String("kind"), Session: c.String("session"), Limit: c.Int("limit"),
	}, nil
}

func sessionsLs(c *cli.Context) error {
	q, err := queryFlags(c)
	if err != nil {
		return cli.Exit("sessctl sessions ls: "+err.Error(), 2)
	}
	src, err := openSource(c)
	if err != nil {
		return cli.Exit("sessctl sessions ls: "+err.Error(), 2)
	}
	defer src.Close()
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	var emit func(*store.Record) error
	var tw *tabwriter.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		emit = func(rec *store.Record) error { return enc.Encode(rec) }
	} else {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tWHO\tREPO\tRUN\tREQUEST\tSTATUS\tOUTCOME\tRULES\tSESSION"+orEmpty(src.fleet != nil, "\tORIGIN"))
		emit = func(rec *store.Record) error {
			var rules []string
			for _, h := range rec.Rules {
				rules = append(rules, h.Name)
			}
			_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Seq, rec.Start.Local().Format("2006-01-02 15:04:05"),
				rec.Kind, orDash(rec.Identity.Caller()), orDash(rec.Identity.Claim("repository", "project_path")),
				orDash(rec.Identity.Claim("run_id", "pipeline_id")),
				orDash(strings.TrimSpace(rec.Method+" "+rec.Host+rec.Path)), status(rec.Status),
				orDash(string(rec.Outcome)), orDash(strings.Join(rules, ",")), orDash(rec.SessionID)+orEmpty(rec.Origin != "", "\t"+rec.Origin))
			return err
		}
	}
	if src.client != nil {
		err = src.client.Sessions(c.Context, q, emit)
	} else {
		_, err = query.Find(src.local(), q, emit)
	}
	if tw != nil {
		tw.Flush()
	}
	if err != nil {
		return cli.Exit("sessctl sessions ls: "+err.Error(), exitCode(err))
	}
	return nil
}

func sessionsShow(c *cli.Context) error {
	id, err := oneArg(c)
	if err != nil {
		return cli.Exit("sessctl sessions show: "+err.Error()+" (session id or sequence number)", 2)
	}
	src, err := openSource(c)
	if err != nil {
		return cli.Exit("sessctl sessions show: "+err.Error(), 2)
	}
	defer src.Close()
	var d *query.SessionDetail
	if src.client != nil {
		d, err = src.client.Session(c.Context, id)
	} else if src.fleet != nil {
		// Whether the shipped rows are the signed log is for
		// `sessctl verify --central`, which checks whole origins.
		d, err = query.Detail(src.fleet, id, nil)
	} else {
		d, err = query.Detail(src.reader, id, query.ProofVerifier(src.reader, ""))
	}
	if err != nil {
		return cli.Exit("sessctl sessions show: "+err.Error(), exitCode(err))
	}
	if c.Bool("json") {
		return json.NewEncoder(os.Stdout).Encode(d)
	}
	return printRecord(os.Stdout, d)
}

func sessionsExport(c *cli.Context) error {
	src, err := openSource(c)
	if err != nil {
		return cli.Exit("sessctl sessions export: "+err.Error(), 2)
	}
	defer src.Close()
	if c.Int("limit") < 0 {
		return cli.Exit("sessctl sessions export: --limit must not be negative", 2)
	}
	o := store.ExportOptions{From: c.Uint64("from"), Limit: c.Int("limit"), Bodies: c.Bool("bodies")}
	var w io.Writer = os.Stdout
	var f *os.File
	if p := c.String("out"); p != "" && p != "-" {
		if f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return cli.Exit("sessctl sessions export: "+err.Error(), 2)
		}
		w = f
	}
	bar := exportProgress(c, src, w)
	defer bar.Done()
	w = progress.Writer{W: w, Bar: bar}
	var n int
	if src.client != nil {
		bw := bufio.NewWriterSize(w, 64<<10)
		n, err = src.client.Export(c.Context, bw, o)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
	} else if src.fleet != nil {
		n, err = exportFleet(c.Context, w, src.fleet, c.String("origin"), o)
	} else {
		n, err = store.Export(c.Context, w, src.reader, o)
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return cli.Exit(fmt.Sprintf("sessctl sessions export: %v (%d records written)", err, n), 1)
	}
	bar.Done()
	fmt.Fprintf(os.Stderr, "exported %d records\n", n)
	return nil
}

// exitCode is 1 for "not found" and refusals by the server, 2 for the rest
// (could not ask).
func exitCode(err error) int {
	var se *admin.StatusError
	if errors.Is(err, store.ErrNotFound) || (errors.As(err, &se) && se.Status < 500 && se.Status != 401) {
		return 1
	}
	return 2
}

func printRecord(w io.Writer, d *query.SessionDetail) error {
	rec := d.Record
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "record %d  %s  session %s\n", rec.Seq, rec.Kind, orDash(rec.SessionID))
	if rec.Origin != "" {
		fmt.Fprintf(bw, "origin    %s (record %s)\n", rec.Origin, query.RecordRef(rec))
	}
	switch {
	case d.Verified != nil && *d.Verified:
		fmt.Fprintf(bw, "chain     verified: in the signed log (prev %s)\n", orDash(rec.Prev))
	case d.Verified != nil:
		fmt.Fprintf(bw, "chain     NOT verified: %s (prev %s)\n", d.VerifyError, orDash(rec.Prev))
	default:
		fmt.Fprintf(bw, "chain     prev %s\n", orDash(rec.Prev))
	}
	fmt.Fprintf(bw, "time      %s .. %s (%s)\n", rec.Start.Format(time.RFC3339Nano), rec.End.Format(time.RFC3339Nano), rec.End.Sub(rec.Start).Round(time.Millisecond))
	fmt.Fprintf(bw, "identity  %s (%s)\n", orDash(rec.Identity.Caller()), orDash(rec.Identity.Method))
	if rec.Identity.Issuer != "" {
		fmt.Fprintf(bw, "  issuer  %s\n  subject %s\n", rec.Identity.Issuer, rec.Identity.Subject)
	}
	if rec.Identity.Policy != "" {
		fmt.Fprintf(bw, "  policy  %s\n", rec.Identity.Policy)
	}
	for _, k := range sortedKeys(rec.Identity.Claims) {
		fmt.Fprintf(bw, "  claim   %s=%s\n", k, rec.Identity.Claims[k])
	}
	for _, k := range sortedKeys(rec.Meta) {
		fmt.Fprintf(bw, "  meta    %s=%s (client-declared, unverified)\n", k, rec.Meta[k])
	}
	fmt.Fprintf(bw, "conn      %s %s %s\n", orDash(rec.Conn.Mode), rec.Conn.Client, rec.Conn.ID)
	fmt.Fprintf(bw, "request   %s %s%s  model %s\n", orDash(rec.Method), rec.Host, rec.Path, orDash(rec.Model))
	if rec.Provider != "" {
		fmt.Fprintf(bw, "provider  %s\n", rec.Provider)
	}
	fmt.Fprintf(bw, "result    %s %s %s\n", status(rec.Status), orDash(string(rec.Outcome)), rec.Reason)
	for _, h := range rec.Rules {
		fmt.Fprintf(bw, "rule      %s %s on %s x%d\n", h.Name, h.Action, h.Scope, h.Count)
	}
	printApproval := func(seq uint64, a *store.Approval) {
		fmt.Fprintf(bw, "approval  %s %s by %s at %s %s (record %d)\n", a.ID, a.Decision, orDash(a.By), a.At.Format(time.RFC3339), a.Reason, seq)
	}
	if rec.Approval != nil {
		printApproval(rec.Seq, rec.Approval)
	}
	for _, r := range d.Related {
		if r.Approval != nil {
			printApproval(r.Seq, r.Approval)
		} else {
			fmt.Fprintf(bw, "related   record %d %s %s\n", r.Seq, r.Kind, r.Outcome)
		}
	}
	fmt.Fprintf(bw, "recording %s, %d deltas\n", orDash(string(rec.Recording)), len(rec.Deltas))
	if d.Prompt != nil {
		fmt.Fprintf(bw, "--- prompt (%d bytes)\n%s\n", len(*d.Prompt), *d.Prompt)
	}
	if d.Answer != nil {
		fmt.Fprintf(bw, "--- answer (%d bytes)\n%s\n", len(*d.Answer), *d.Answer)
	}
	return bw.Flush()
}

func status(s int) string {
	if s == 0 {
		return "-"
	}
	return fmt.Sprint(s)
}

// orEmpty is s when cond holds, else "".
func orEmpty(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// exportProgress is the progress line of an export: on stderr when it is a
// terminal, unless --quiet, or the export itself goes to that terminal.
func exportProgress(c *cli.Context, src *sessionSource, out io.Writer) *progress.Bar {
	quiet := c.Bool("quiet") || (out == io.Writer(os.Stdout) && progress.IsTerminal(os.Stdout))
	var total int64
	if src.reader != nil {
		if n, err := src.reader.Records(); err == nil && n > c.Uint64("from") {
			total = int64(n - c.Uint64("from"))
		}
		if l := int64(c.Int("limit")); l > 0 && l < total {
			total = l
		}
	}
	return progress.New(os.Stderr, "exporting", total, progress.Options{Quiet: quiet, Unit: "records"})
}
