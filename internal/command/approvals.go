package command

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/internal/admin"
)

// adminFlags locate a running sessctl's admin API.
func adminFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "admin", Usage: "admin API base URL of a running sessctl, such as http://127.0.0.1:9090", EnvVars: []string{"SESSCTL_ADMIN_URL"}},
		&cli.StringFlag{Name: "token", Usage: "admin token (prefer --token-file or SESSCTL_ADMIN_TOKEN: arguments are visible to other users)", EnvVars: []string{"SESSCTL_ADMIN_TOKEN"}},
		&cli.StringFlag{Name: "token-file", Usage: "file holding the admin token"},
	}
}

// adminClient builds an admin API client from the flags.
func adminClient(c *cli.Context) (*admin.Client, error) {
	base := c.String("admin")
	if base == "" {
		return nil, errors.New("--admin URL (or SESSCTL_ADMIN_URL) is required")
	}
	tok := c.String("token")
	if p := c.String("token-file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	cl, err := admin.NewClient(base, tok, nil)
	if err != nil {
		return nil, err
	}
	if cl.Insecure() {
		fmt.Fprintln(os.Stderr, "sessctl: warning: sending the admin token over plain HTTP to a host that is not loopback")
	}
	return cl, nil
}

// oneArg returns the command's single positional argument. urfave/cli
// stops parsing flags at the first argument, so flags written after it
// ("approve ID --reason R") are parsed here.
func oneArg(c *cli.Context) (string, error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		return "", errors.New("want one ID")
	}
	if len(args) > 1 {
		set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
		set.SetOutput(io.Discard)
		for _, f := range c.Command.Flags {
			if err := f.Apply(set); err != nil {
				return "", err
			}
		}
		if err := set.Parse(args[1:]); err != nil {
			return "", err
		}
		if set.NArg() > 0 {
			return "", fmt.Errorf("want one ID, got %q too", set.Arg(0))
		}
		var err error
		set.Visit(func(f *flag.Flag) {
			if serr := c.Set(f.Name, f.Value.String()); serr != nil && err == nil {
				err = serr
			}
		})
		if err != nil {
			return "", err
		}
	}
	return args[0], nil
}

func approvalsCommand() *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}
	return &cli.Command{
		Name:  "approvals",
		Usage: "list, show, approve and deny held requests (through a running sessctl's admin API)",
		Description: "The approver recorded with each decision is the name of the admin token used.\n" +
			"A runner's own identity cannot decide its request.",
		Subcommands: []*cli.Command{
			{
				Name:   "ls",
				Usage:  "list the requests waiting for a decision, oldest first",
				Flags:  append(adminFlags(), jsonFlag),
				Action: approvalsLs,
			},
			{
				Name:      "show",
				Usage:     "show one waiting request with its prompt preview",
				ArgsUsage: "ID",
				Flags:     append(adminFlags(), jsonFlag),
				Action:    approvalsShow,
			},
			{
				Name:      "approve",
				Usage:     "let a held request through",
				ArgsUsage: "ID",
				Flags:     append(adminFlags(), &cli.StringFlag{Name: "reason", Usage: "why (recorded)"}, jsonFlag),
				Action:    approvalsDecide(approval.Approved),
			},
			{
				Name:      "deny",
				Usage:     "refuse a held request (the runner gets a 403)",
				ArgsUsage: "ID",
				Flags:     append(adminFlags(), &cli.StringFlag{Name: "reason", Usage: "why (required, recorded)"}, jsonFlag),
				Action:    approvalsDecide(approval.Denied),
			},
		},
	}
}

func approvalsLs(c *cli.Context) error {
	cl, err := adminClient(c)
	if err != nil {
		return cli.Exit("sessctl approvals ls: "+err.Error(), 2)
	}
	list, err := cl.Approvals(c.Context)
	if err != nil {
		return cli.Exit("sessctl approvals ls: "+err.Error(), exitCode(err))
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		for _, r := range list {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(list) == 0 {
		fmt.Println("no requests are waiting")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fleet := slices.ContainsFunc(list, func(r approval.Request) bool { return r.Origin != "" })
	fmt.Fprintln(tw, "ID\tWAITING\tTIMES OUT IN\tREQUESTER\tREQUEST\tMODEL\tRULE"+orEmpty(fleet, "\tHELD BY"))
	for _, r := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", r.ID, now.Sub(r.Created).Round(time.Second),
			r.Expires.Sub(now).Round(time.Second), orDash(r.Requester),
			orDash(strings.TrimSpace(r.Method+" "+r.Host+r.Path)), orDash(r.Model), orDash(r.Rule), orEmpty(fleet, "\t"+orDash(r.Origin)))
	}
	return tw.Flush()
}

func approvalsShow(c *cli.Context) error {
	id, err := oneArg(c)
	if err != nil {
		return cli.Exit("sessctl approvals show: "+err.Error(), 2)
	}
	cl, err := adminClient(c)
	if err != nil {
		return cli.Exit("sessctl approvals show: "+err.Error(), 2)
	}
	r, err := cl.Approval(c.Context, id)
	if err != nil {
		return cli.Exit("sessctl approvals show: "+err.Error(), exitCode(err))
	}
	if c.Bool("json") {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	printApprovalRequest(os.Stdout, r)
	return nil
}

func printApprovalRequest(w io.Writer, r *approval.Request) {
	fmt.Fprintf(w, "approval  %s\n", r.ID)
	fmt.Fprintf(w, "requester %s", orDash(r.Requester))
	if r.RequesterName != "" {
		fmt.Fprintf(w, " (%s)", r.RequesterName)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "request   %s %s%s  model %s\n", orDash(r.Method), r.Host, r.Path, orDash(r.Model))
	fmt.Fprintf(w, "rule      %s\n", orDash(r.Rule))
	fmt.Fprintf(w, "session   %s\n", orDash(r.SessionID))
	if r.Origin != "" {
		fmt.Fprintf(w, "held by   %s\n", r.Origin)
	}
	fmt.Fprintf(w, "held      %s, times out %s\n", r.Created.Format(time.RFC3339), r.Expires.Format(time.RFC3339))
	if r.Prompt != "" {
		fmt.Fprintf(w, "--- prompt preview (%d bytes)\n%s\n", len(r.Prompt), r.Prompt)
	}
}

func approvalsDecide(decision string) cli.ActionFunc {
	verb := map[string]string{approval.Approved: "approve", approval.Denied: "deny"}[decision]
	return func(c *cli.Context) error {
		id, err := oneArg(c)
		if err != nil {
			return cli.Exit("sessctl approvals "+verb+": "+err.Error(), 2)
		}
		reason := strings.TrimSpace(c.String("reason"))
		if decision == approval.Denied && reason == "" {
			return cli.Exit("sessctl approvals deny: --reason is required", 2)
		}
		cl, err := adminClient(c)
		if err != nil {
			return cli.Exit("sessctl approvals "+verb+": "+err.Error(), 2)
		}
		d, err := cl.Decide(c.Context, id, decision, reason)
		if err != nil {
			return cli.Exit("sessctl approvals "+verb+": "+err.Error(), exitCode(err))
		}
		if c.Bool("json") {
			return json.NewEncoder(os.Stdout).Encode(d)
		}
		fmt.Printf("%s %s by %s\n", d.ID, d.Decision, d.By)
		return nil
	}
}
