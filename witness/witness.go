// Package witness has sessctl's checkpoints cosigned by independent
// witnesses (C2SP tlog-witness, tlog-cosignature) and checks cosignatures.
//
// A witness cosigns a checkpoint only if it is consistent with every
// checkpoint of the same log it cosigned before, so a log that carries a
// quorum of cosignatures cannot show two histories: someone with root on
// the proxy's host who rewrites the log and re-signs it with the log key
// gets no cosignature for the rewritten tree.
//
// [Cosigner] sends each new checkpoint to the configured witnesses with
// the add-checkpoint call (old size and RFC 6962 consistency proof),
// learns a witness's size from 409 Conflict, stores the cosignatures in
// the log (store.Store.AddCosignatures), and reports a witness that finds
// the log inconsistent (a fork or a rollback) loudly: an error in the
// log, a metric, and [Cosigner.Health]. [CheckQuorum] checks the
// cosignatures on a checkpoint for `sessctl verify`.
//
// The client is small and built on golang.org/x/mod/sumdb/note, rather
// than github.com/transparency-dev/witness/client/http, whose module
// (untagged) requires the Cloud Spanner and Secret Manager clients,
// OpenTelemetry, tessera and a SQLite driver, among 77 requirements.
package witness

import (
	"errors"
	"fmt"
	"net/url"
)

// Witness is one configured witness (config key `witnesses:`).
type Witness struct {
	// Name labels the witness in logs, metrics and errors.
	Name string `yaml:"name"`
	// URL is the witness's submission prefix; add-checkpoint is POSTed
	// to URL + "/add-checkpoint".
	URL string `yaml:"url"`
	// VKey is the witness's verifier key, "name+hash+base64" (C2SP
	// signed-note vkey; cosignature/v1 type 0x04, or Ed25519 type 0x01).
	VKey string `yaml:"vkey"`
}

func (w Witness) check() error {
	if w.Name == "" {
		return errors.New("witness: name is required")
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("witness %s: url %q is not an http(s) URL", w.Name, w.URL)
	}
	if _, err := NewVerifier(w.VKey); err != nil {
		return fmt.Errorf("witness %s: %w", w.Name, err)
	}
	return nil
}

// Validate checks the witnesses and quorum of a configuration: each
// witness has a name (unique), an http(s) URL and a valid verifier key,
// and the quorum is between 0 and the number of witnesses.
func Validate(ws []Witness, quorum int) error {
	seen := map[string]bool{}
	for _, w := range ws {
		if err := w.check(); err != nil {
			return err
		}
		if seen[w.Name] {
			return fmt.Errorf("witness %s: name used twice", w.Name)
		}
		seen[w.Name] = true
	}
	if quorum < 0 || quorum > len(ws) {
		return fmt.Errorf("witness_quorum %d: want 0 to %d (the number of witnesses)", quorum, len(ws))
	}
	return nil
}
