package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/progress"
	"github.com/sessctl/sessctl/store"
	"github.com/urfave/cli/v2"
)

// verifyCommand is "sessctl verify": check session logs or a proof bundle.
// Exit 0: all good; 1: tampering found; 2: could not verify.
func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "verify session logs (hash chain, tree, bodies, checkpoints) or a proof bundle",
		Description: "Exit status 0: every log verifies; 1: a log was tampered with (one line per problem, " +
			"\"record <seq>: <kind>\"); 2: could not verify (unreadable, locked or foreign file, wrong key).\n" +
			"With --export FILE --checkpoint CPFILE it checks a JSONL export (sessctl sessions export) offline: " +
			"each record against its hash, the prev links, and the tree of the hashes against the signed checkpoints.\n" +
			"With --central DSN it checks the logs a fleet's replicas shipped to PostgreSQL, one line per origin: " +
			"\"ok: origin <o>: N records, head <hex>\", or the origin's first bad sequence number and what is wrong " +
			"(exit 1), or why it cannot be checked (exit 2). Keys are pinned with --pubkey ORIGIN=KEY or central_origins " +
			"in --config; an origin without a pin is checked against the key first seen for it, and says so.",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "db", Usage: "session log `FILE` (repeat for several replicas)"},
			&cli.StringFlag{Name: "checkpoint", Usage: "`FILE` of signed checkpoints kept off the host (catches truncation and rollback)"},
			&cli.StringSliceFlag{Name: "pubkey", Usage: "pin the checkpoint signer: note verifier `KEY`, or a file holding it (with --central: repeat, ORIGIN=KEY or KEY)"},
			&cli.StringFlag{Name: "central", Usage: "verify every replica's log shipped to the PostgreSQL `DSN` (\"env\": take it from $SESSCTL_CENTRAL_DSN, off the command line)"},
			&cli.StringSliceFlag{Name: "origin", Usage: "with --central: only this `ORIGIN` (repeatable)"},
			&cli.StringFlag{Name: "config", Usage: "sessctl config `FILE`: pinned keys from central_origins (with --central); witnesses and witness_quorum when --witness-vkey is not given", EnvVars: []string{"SESSCTL_CONFIG"}},
			&cli.BoolFlag{Name: "json", Usage: "print the reports as JSON"},
			&cli.StringFlag{Name: "proof", Usage: "verify the proof bundle in `FILE` instead of a log"},
			&cli.StringFlag{Name: "export", Usage: "verify the JSONL export in `FILE` (- for standard input) against --checkpoint instead of a log"},
			&cli.StringFlag{Name: "admin", Usage: "verify a running sessctl: fetch a consistent snapshot from its admin `URL` (GET /api/v1/snapshot; bearer token from $SESSCTL_ADMIN_TOKEN)"},
			quietFlag,
		}, witnessFlags()...),
		Action: runVerify,
	}
}

// quietFlag turns off the progress line that long work draws on a
// terminal (it is never drawn when stderr is not a terminal).
var quietFlag = &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress line on the terminal"}

func runVerify(c *cli.Context) error {
	if c.IsSet("central") {
		return verifyCentral(c)
	}
	if len(c.StringSlice("pubkey")) > 1 {
		return cli.Exit("sessctl verify: one --pubkey per log (several only with --central)", 2)
	}
	var pubkey string
	if keys := c.StringSlice("pubkey"); len(keys) == 1 {
		var err error
		if pubkey, err = readPubkey(keys[0]); err != nil {
			return cli.Exit(err.Error(), 2)
		}
	}
	if f := c.String("proof"); f != "" {
		return verifyProofFile(c, f, pubkey)
	}
	if f := c.String("export"); f != "" {
		return verifyExportFile(c, f, pubkey)
	}
	dbs := c.StringSlice("db")
	if u := c.String("admin"); u != "" {
		snap, err := fetchSnapshot(c.Context, u)
		if err != nil {
			return cli.Exit(fmt.Sprintf("sessctl verify: %v", err), 2)
		}
		defer os.Remove(snap)
		dbs = append(dbs, snap)
	}
	if len(dbs) == 0 {
		return cli.Exit("sessctl verify: --db FILE, --admin URL or --proof FILE is required", 2)
	}
	vkeys, quorum, err := witnessPolicy(c)
	if err != nil {
		return exitWitness(err)
	}
	opts := store.VerifyOptions{PublicKey: pubkey}
	if f := c.String("checkpoint"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return cli.Exit(fmt.Sprintf("sessctl verify: %v", err), 2)
		}
		opts.Checkpoints = store.SplitNotes(data)
	}
	var reports []*store.Report
	var lines []string
	code := 0
	for _, db := range dbs {
		bar := progress.New(c.App.ErrWriter, "verifying "+db, 0, progress.Options{Quiet: c.Bool("quiet"), Unit: "records"})
		opts.Progress = func(done, total uint64) { bar.SetTotal(int64(total)); bar.Set(int64(done)) }
		rep, err := store.Verify(db, opts)
		if rep != nil {
			bar.Set(rep.Records)
		}
		bar.Done()
		if err != nil {
			return cli.Exit(fmt.Sprintf("sessctl verify: %s: could not verify: %v", db, err), 2)
		}
		reports = append(reports, rep)
		prefix := ""
		if len(dbs) > 1 {
			prefix = db + ": "
		}
		if rep.OK() && len(vkeys) > 0 {
			line, ok, err := checkWitnessed(rep, db, opts.Checkpoints, vkeys, quorum)
			if err != nil {
				return cli.Exit(fmt.Sprintf("sessctl verify: %s: could not check the cosignatures: %v", db, err), 2)
			}
			if !ok {
				code = 1
				lines = append(lines, prefix+line)
				continue
			}
			lines = append(lines, prefix+rep.Summary(), prefix+line)
			continue
		}
		if rep.OK() {
			lines = append(lines, prefix+rep.Summary())
			continue
		}
		code = 1
		for _, p := range rep.Problems {
			lines = append(lines, prefix+p.String())
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		var v any = reports
		if len(reports) == 1 {
			v = reports[0]
		}
		if err := enc.Encode(v); err != nil {
			return cli.Exit(err.Error(), 2)
		}
		if code != 0 {
			return cli.Exit("", code)
		}
		return nil
	}
	if code != 0 {
		return cli.Exit(strings.Join(lines, "\n"), code)
	}
	fmt.Fprintln(c.App.Writer, strings.Join(lines, "\n"))
	return nil
}

func verifyProofFile(c *cli.Context, file, pubkey string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return cli.Exit(fmt.Sprintf("sessctl verify: %v", err), 2)
	}
	if store.IsTLogProof(data) {
		return verifyTLogProofFile(c, file, data, pubkey)
	}
	res, err := store.VerifyProof(data, pubkey)
	if err != nil {
		return cli.Exit(fmt.Sprintf("sessctl verify: %s: %v", file, err), 1)
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(res)
	}
	fmt.Fprintf(c.App.Writer, "ok: record %d is in the log %s of %d records, root %s\n",
		res.Seq, res.Checkpoint.Origin, res.Checkpoint.Size, res.Checkpoint.Root)
	if !res.KeyPinned {
		fmt.Fprintf(c.App.Writer, "note: checked against the key in the bundle (%s); this proves consistency, not origin (pin it with --pubkey)\n", res.PublicKey)
	}
	return nil
}

// verifyExportFile checks a JSONL export against the signed checkpoints in
// --checkpoint.
func verifyExportFile(c *cli.Context, file, pubkey string) error {
	cpFile := c.String("checkpoint")
	if cpFile == "" {
		return cli.Exit("sessctl verify: --export needs --checkpoint FILE (signed checkpoints of the log, kept off its host)", 2)
	}
	data, err := os.ReadFile(cpFile)
	if err != nil {
		return cli.Exit(fmt.Sprintf("sessctl verify: %v", err), 2)
	}
	var in io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return cli.Exit(fmt.Sprintf("sessctl verify: %v", err), 2)
		}
		defer f.Close()
		in = f
	}
	rep, err := store.VerifyExport(in, store.SplitNotes(data), pubkey)
	if err != nil {
		return cli.Exit(fmt.Sprintf("sessctl verify: %s: could not verify: %v", file, err), 2)
	}
	if c.Bool("json") {
		if err := json.NewEncoder(c.App.Writer).Encode(rep); err != nil {
			return cli.Exit(err.Error(), 2)
		}
		if !rep.OK() {
			return cli.Exit("", 1)
		}
		return nil
	}
	if !rep.OK() {
		return cli.Exit(strings.Join(rep.Problems, "\n"), 1)
	}
	fmt.Fprintln(c.App.Writer, rep.Summary())
	if rep.Size < rep.Records {
		fmt.Fprintf(c.App.Writer, "note: records %d to %d come after the newest checkpoint checked: only the hash chain vouches for them\n", rep.Size, rep.Records-1)
	}
	if rep.Beyond > 0 {
		fmt.Fprintf(c.App.Writer, "note: %d checkpoints cover more records than the export has and were not checked\n", rep.Beyond)
	}
	if !rep.KeyPinned {
		fmt.Fprintf(c.App.Writer, "note: checked against the key in the export's genesis record (%s); this proves consistency, not origin (pin it with --pubkey)\n", rep.PublicKey)
	}
	return nil
}

// fetchSnapshot downloads a snapshot of a running log through the admin
// API (token from SESSCTL_ADMIN_TOKEN) into a temporary file.
func fetchSnapshot(ctx context.Context, adminURL string) (string, error) {
	client, err := admin.NewClient(adminURL, os.Getenv("SESSCTL_ADMIN_TOKEN"), nil)
	if err != nil {
		return "", fmt.Errorf("--admin: %w", err)
	}
	f, err := os.CreateTemp("", "sessctl-snapshot-*.db")
	if err != nil {
		return "", err
	}
	err = client.Snapshot(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("fetch snapshot: %w", err)
	}
	return f.Name(), nil
}

// readPubkey accepts a note verifier key or the name of a file holding one.
func readPubkey(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if data, err := os.ReadFile(v); err == nil {
		return strings.TrimSpace(string(data)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sessctl verify: --pubkey: %v", err)
	}
	return v, nil
}
