package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

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
			"\"record <seq>: <kind>\"); 2: could not verify (unreadable, locked or foreign file, wrong key).",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "db", Usage: "session log `FILE` (repeat for several replicas)"},
			&cli.StringFlag{Name: "checkpoint", Usage: "`FILE` of signed checkpoints kept off the host (catches truncation and rollback)"},
			&cli.StringFlag{Name: "pubkey", Usage: "pin the checkpoint signer: note verifier `KEY`, or a file holding it"},
			&cli.BoolFlag{Name: "json", Usage: "print the reports as JSON"},
			&cli.StringFlag{Name: "proof", Usage: "verify the proof bundle in `FILE` instead of a log"},
		},
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	pubkey, err := readPubkey(c.String("pubkey"))
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if f := c.String("proof"); f != "" {
		return verifyProofFile(c, f, pubkey)
	}
	dbs := c.StringSlice("db")
	if len(dbs) == 0 {
		return cli.Exit("sessctl verify: --db FILE or --proof FILE is required", 2)
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
		rep, err := store.Verify(db, opts)
		if err != nil {
			return cli.Exit(fmt.Sprintf("sessctl verify: %s: could not verify: %v", db, err), 2)
		}
		reports = append(reports, rep)
		prefix := ""
		if len(dbs) > 1 {
			prefix = db + ": "
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
