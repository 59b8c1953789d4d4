package command

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/witness"
)

// witnessFlags are verify's flags for the witness quorum.
func witnessFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "witness-vkey", Usage: "a witness's verifier `KEY` (repeat for several); the checkpoint must carry --quorum of their cosignatures"},
		&cli.IntFlag{Name: "quorum", Value: -1, Usage: "cosignatures the newest checkpoint (and the --checkpoint one) must carry (default: all --witness-vkey keys, or witness_quorum of --config)"},
	}
}

// witnessPolicy returns the witness keys and quorum verify checks, none
// if neither the flags nor a config name witnesses.
func witnessPolicy(c *cli.Context) ([]string, int, error) {
	vkeys := c.StringSlice("witness-vkey")
	quorum := c.Int("quorum")
	if len(vkeys) == 0 && c.String("config") != "" {
		cfg, err := config.Load(c.String("config"))
		if err != nil {
			return nil, 0, err
		}
		for _, w := range cfg.Witnesses {
			vkeys = append(vkeys, w.VKey)
		}
		if quorum < 0 {
			quorum = cfg.WitnessQuorum
		}
	}
	if quorum < 0 {
		quorum = len(vkeys)
	}
	if quorum > len(vkeys) {
		return nil, 0, fmt.Errorf("--quorum %d needs at least %d --witness-vkey keys, got %d", quorum, quorum, len(vkeys))
	}
	for _, vk := range vkeys {
		if _, err := witness.NewVerifier(vk); err != nil {
			return nil, 0, err
		}
	}
	return vkeys, quorum, nil
}

// checkWitnessed checks that the newest checkpoint of the verified log
// (with its stored cosignatures), and the newest external checkpoint for
// its origin, carry quorum valid cosignatures. It returns the line to
// print and whether the check passed; err means it could not check.
func checkWitnessed(rep *store.Report, db string, external [][]byte, vkeys []string, quorum int) (string, bool, error) {
	r, err := store.OpenReader(db)
	if err != nil {
		return "", false, err
	}
	msg, size, err := r.LatestCosigned()
	r.Close()
	if err != nil {
		return "", false, err
	}
	line, ok := quorumLine(fmt.Sprintf("checkpoint %d", size), msg, rep.PublicKey, vkeys, quorum)
	if !ok {
		return line, false, nil
	}
	var ext []byte
	for _, n := range external {
		if c, err := store.OpenCheckpoint(n, rep.PublicKey); err == nil && c.Origin == rep.Origin {
			ext = n
		}
	}
	if ext == nil {
		return line, true, nil
	}
	c, _ := store.OpenCheckpoint(ext, rep.PublicKey)
	extLine, ok := quorumLine(fmt.Sprintf("--checkpoint %d", c.Size), ext, rep.PublicKey, vkeys, quorum)
	return line + "\n" + extLine, ok, nil
}

// quorumLine checks one signed checkpoint: the log's signature, then the
// cosignatures.
func quorumLine(what string, msg []byte, logKey string, vkeys []string, quorum int) (string, bool) {
	if _, err := store.OpenCheckpoint(msg, logKey); err != nil {
		return fmt.Sprintf("%s: not signed by the log: %v", what, err), false
	}
	res, err := witness.CheckQuorum(msg, vkeys, quorum)
	if err != nil {
		return fmt.Sprintf("%s: %v", what, err), false
	}
	return fmt.Sprintf("witnessed: %s carries %d of %d required cosignatures (%v)", what, len(res.Valid), quorum, res.Valid), true
}

// verifyTLogProofFile checks a C2SP tlog-proof (sessctl proof --format
// c2sp) with the pinned log key, and its cosignatures when witness keys
// are given.
func verifyTLogProofFile(c *cli.Context, file string, data []byte, pubkey string) error {
	vkeys, quorum, err := witnessPolicy(c)
	if err != nil {
		return exitWitness(err)
	}
	if pubkey == "" {
		return cli.Exit("sessctl verify: a c2sp.org/tlog-proof does not name the log's key: give --pubkey", 2)
	}
	res, cp, err := store.VerifyTLogProof(data, pubkey)
	if err != nil {
		return cli.Exit(fmt.Sprintf("sessctl verify: %s: %v", file, err), 1)
	}
	line := ""
	if len(vkeys) > 0 {
		l, ok := quorumLine(fmt.Sprintf("checkpoint %d", res.Checkpoint.Size), cp, pubkey, vkeys, quorum)
		if !ok {
			return cli.Exit(fmt.Sprintf("sessctl verify: %s: %s", file, l), 1)
		}
		line = l
	}
	fmt.Fprintf(c.App.Writer, "ok: record %d is in the log %s of %d records, root %s\n",
		res.Seq, res.Checkpoint.Origin, res.Checkpoint.Size, res.Checkpoint.Root)
	if line != "" {
		fmt.Fprintln(c.App.Writer, line)
	}
	return nil
}

// exitWitness reports a failure to load the witness policy.
func exitWitness(err error) error {
	return cli.Exit(fmt.Sprintf("sessctl verify: %v", err), 2)
}
