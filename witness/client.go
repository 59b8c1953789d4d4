package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Errors of [Client.AddCheckpoint], matched with errors.Is.
var (
	// ErrUnknownLog: the witness does not know the log's origin (404).
	ErrUnknownLog = errors.New("witness does not know this log, or the URL is wrong (404): check the url and add the log's origin and key to the witness")
	// ErrForbidden: the witness trusts none of the checkpoint's
	// signatures (403), e.g. it has another key for this origin.
	ErrForbidden = errors.New("witness refuses the checkpoint's signature (403): give the witness the log's key")
	// ErrInconsistent: the checkpoint is not consistent with what the
	// witness saw before. Either the log forked or rolled back, or its
	// consistency proof is wrong (422).
	ErrInconsistent = errors.New("witness says the checkpoint is inconsistent with the tree it saw before")
)

// ConflictError is a 409 Conflict answer: the witness holds a checkpoint
// of Size records, not the old size the request named.
type ConflictError struct{ Size int64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness holds a checkpoint of %d records (409)", e.Size)
}

// maxResponse bounds what a witness's answer may hold.
const maxResponse = 64 << 10

// Client submits checkpoints to one witness with the C2SP tlog-witness
// add-checkpoint call and checks the cosignatures it returns.
type Client struct {
	w        Witness
	verifier note.Verifier
	hc       *http.Client
}

// NewClient returns a client for w. hc sends the requests (its timeout
// bounds a request); nil means a client that uses no proxy.
func NewClient(w Witness, hc *http.Client) (*Client, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	v, err := NewVerifier(w.VKey)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	return &Client{w: w, verifier: v, hc: hc}, nil
}

// Verifier returns the verifier of the witness's cosignatures.
func (c *Client) Verifier() note.Verifier { return c.verifier }

// AddCheckpoint asks the witness to cosign signed (a signed checkpoint
// note), proving it consistent with the checkpoint of oldSize records the
// witness is believed to hold. It returns the witness's signature lines
// that verify with its key (at least one), or an error: a
// *ConflictError, or one wrapping ErrUnknownLog, ErrForbidden or
// ErrInconsistent, or a transport error.
func (c *Client) AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, signed []byte) ([]byte, error) {
	if len(proof) > 63 {
		return nil, fmt.Errorf("witness %s: consistency proof of %d hashes (at most 63)", c.w.Name, len(proof))
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", oldSize)
	for _, h := range proof {
		fmt.Fprintf(&body, "%s\n", h)
	}
	body.WriteString("\n")
	body.Write(signed)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.w.URL, "/")+"/add-checkpoint", &body)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", c.w.Name, err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", c.w.Name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("witness %s: reading the answer: %w", c.w.Name, err)
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("witness %s: answer larger than %d bytes", c.w.Name, maxResponse)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return c.checkCosignatures(signed, data)
	case http.StatusConflict:
		s := strings.TrimSuffix(string(data), "\n")
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("witness %s: 409 Conflict without a tree size (%.40q)", c.w.Name, s)
		}
		return nil, &ConflictError{Size: n}
	case http.StatusNotFound:
		return nil, fmt.Errorf("witness %s: %w", c.w.Name, ErrUnknownLog)
	case http.StatusForbidden:
		return nil, fmt.Errorf("witness %s: %w", c.w.Name, ErrForbidden)
	case http.StatusUnprocessableEntity:
		return nil, fmt.Errorf("witness %s: %w (422: %s)", c.w.Name, ErrInconsistent, excerpt(data))
	}
	return nil, fmt.Errorf("witness %s: %s: %s", c.w.Name, resp.Status, excerpt(data))
}

// checkCosignatures keeps the signature lines of the answer that verify
// with the witness's key over the checkpoint's body.
func (c *Client) checkCosignatures(signed, answer []byte) ([]byte, error) {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return nil, fmt.Errorf("witness %s: the checkpoint is not a signed note", c.w.Name)
	}
	body := signed[:i+1]
	var good []byte
	for _, line := range bytes.SplitAfter(answer, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !bytes.HasPrefix(line, []byte("— ")) || !bytes.HasSuffix(line, []byte("\n")) {
			return nil, fmt.Errorf("witness %s: answer is not signature lines: %s", c.w.Name, excerpt(answer))
		}
		// Open the body with this one line and the witness's key only.
		msg := append(append(bytes.Clone(body), '\n'), line...)
		if _, err := note.Open(msg, note.VerifierList(c.verifier)); err == nil {
			good = append(good, line...)
		}
	}
	if len(good) == 0 {
		return nil, fmt.Errorf("witness %s: no cosignature in the answer verifies with key %s", c.w.Name, c.w.VKey)
	}
	return good, nil
}

// excerpt returns the start of a witness's answer for an error message.
func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strconv.Quote(s)
}
