package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Log is the side of the session log the cosigner needs;
// *store.Store implements it.
type Log interface {
	// ProveConsistency returns the RFC 6962 consistency proof from the
	// tree of oldSize records to the tree of newSize records.
	ProveConsistency(oldSize, newSize int64) (tlog.TreeProof, error)
	// AddCosignatures stores cosignature lines on the checkpoint of size
	// records.
	AddCosignatures(size int64, lines []byte) error
	// WitnessSize and SetWitnessSize keep the size each witness is
	// believed to hold across restarts.
	WitnessSize(name string) (int64, error)
	SetWitnessSize(name string, size int64) error
}

// Defaults for Options.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultRetryInterval = 30 * time.Second
)

// Options configure a Cosigner.
type Options struct {
	Witnesses []Witness
	// Quorum is the number of cosignatures a checkpoint needs; a
	// checkpoint with fewer is logged as a warning.
	Quorum int
	// Timeout bounds one add-checkpoint request (DefaultTimeout).
	Timeout time.Duration
	// RetryInterval is how long to wait before asking a witness that
	// failed (timeout, 5xx, 403, 404) again for the newest checkpoint
	// (DefaultRetryInterval). A newer checkpoint is sent at once.
	RetryInterval time.Duration
	// HTTPClient sends the requests; nil means one that uses no proxy.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// OnFork, if set, is called with the witness's name each time a
	// witness refuses a checkpoint as inconsistent with what it saw
	// before (e.g. to count it in sessctl_witness_fork_total).
	OnFork func(witness string)
}

// Cosigner gets each new checkpoint cosigned by the witnesses. Its
// methods are safe for concurrent use.
type Cosigner struct {
	o       Options
	log     *slog.Logger
	clients []*Client
	in      chan []byte

	mu    sync.Mutex
	stats map[string]*witnessStats
	// forks holds, per witness, why it found the log inconsistent.
	forks map[string]string
	// errs holds each witness's last error.
	errs map[string]error
	// lastSize and lastCount: the newest checkpoint worked on and its
	// number of cosignatures.
	lastSize, lastCount int64
}

type witnessStats struct {
	size                              int64 // checkpoint the witness holds, as far as we know
	cosigned, failures, inconsistents int64
}

// New returns a cosigner for the configured witnesses. It checks the
// configuration like [Validate].
func New(o Options) (*Cosigner, error) {
	if err := Validate(o.Witnesses, o.Quorum); err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	c := &Cosigner{o: o, log: o.Logger, in: make(chan []byte, 1), stats: map[string]*witnessStats{}, forks: map[string]string{}}
	for _, w := range o.Witnesses {
		cl, err := NewClient(w, o.HTTPClient)
		if err != nil {
			return nil, err
		}
		c.clients = append(c.clients, cl)
		c.stats[w.Name] = &witnessStats{}
	}
	return c, nil
}

// Submit queues a signed checkpoint for cosigning and returns at once; a
// checkpoint not yet sent is replaced by a newer one. It is the store's
// OnCheckpoint hook.
func (c *Cosigner) Submit(signed []byte) {
	for {
		select {
		case c.in <- bytes.Clone(signed):
			return
		default:
		}
		select {
		case <-c.in: // drop the older one
		default:
		}
	}
}

// Run sends the submitted checkpoints to the witnesses until ctx is done,
// storing cosignatures in log. A witness that failed is asked again every
// RetryInterval until it cosigns the newest checkpoint.
func (c *Cosigner) Run(ctx context.Context, log Log) {
	for _, cl := range c.clients {
		n, err := log.WitnessSize(cl.w.Name)
		if err != nil {
			c.log.Error("witness: reading the size it holds", "witness", cl.w.Name, "err", err)
		}
		c.mu.Lock()
		c.stats[cl.w.Name].size = n
		c.mu.Unlock()
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var cur []byte
	var pending []*Client
	for {
		select {
		case <-ctx.Done():
			return
		case cur = <-c.in:
			pending = slices.Clone(c.clients)
		case <-retry.C:
		}
		if cur == nil || len(pending) == 0 {
			continue
		}
		pending = c.cosign(ctx, log, cur, pending)
		if len(pending) > 0 && ctx.Err() == nil {
			retry.Reset(c.o.RetryInterval)
		}
	}
}

// Cosign sends signed to every witness at once and waits for them. It
// returns the number of witnesses that cosigned it and the errors of the
// others.
func (c *Cosigner) Cosign(ctx context.Context, log Log, signed []byte) (int, error) {
	if _, err := checkpointSize(signed); err != nil {
		return 0, err
	}
	c.mu.Lock()
	clear(c.lastErrs())
	c.mu.Unlock()
	c.cosign(ctx, log, signed, c.clients)
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, cl := range c.clients {
		if err := c.lastErrs()[cl.w.Name]; err != nil {
			errs = append(errs, err)
		}
	}
	return len(c.clients) - len(errs), errors.Join(errs...)
}

// cosign sends signed to each witness of ws concurrently and returns those
// to ask again (failed for a reason other than inconsistency).
func (c *Cosigner) cosign(ctx context.Context, log Log, signed []byte, ws []*Client) []*Client {
	size, err := checkpointSize(signed)
	if err != nil {
		c.log.Error("witness: not a checkpoint", "err", err)
		return nil
	}
	type result struct {
		cl  *Client
		err error
	}
	res := make(chan result, len(ws))
	for _, cl := range ws {
		go func() { res <- result{cl, c.sendOne(ctx, log, cl, signed, size)} }()
	}
	var again []*Client
	got := 0
	for range ws {
		r := <-res
		switch {
		case r.err == nil:
			got++
		case errors.Is(r.err, ErrInconsistent):
			c.fork(r.cl.w.Name, size, r.err)
		default:
			c.fail(r.cl.w.Name, r.err)
			again = append(again, r.cl)
		}
	}
	c.mu.Lock()
	if c.lastSize != size {
		c.lastSize, c.lastCount = size, 0
	}
	c.lastCount += int64(got)
	count := c.lastCount
	c.mu.Unlock()
	switch {
	case count >= int64(c.o.Quorum) && got > 0:
		c.log.Debug("checkpoint cosigned", "size", size, "cosignatures", count, "quorum", c.o.Quorum)
	case count < int64(c.o.Quorum):
		c.log.Warn("checkpoint below the witness quorum", "size", size, "cosignatures", count, "quorum", c.o.Quorum)
	}
	slices.SortFunc(again, func(a, b *Client) int { return strings.Compare(a.w.Name, b.w.Name) })
	return again
}

// sendOne gets signed (of size records) cosigned by one witness: it sends
// the old size it believes the witness holds with the consistency proof,
// and on 409 Conflict learns the witness's size and tries again.
func (c *Cosigner) sendOne(ctx context.Context, log Log, cl *Client, signed []byte, size int64) error {
	name := cl.w.Name
	c.mu.Lock()
	old := c.stats[name].size
	c.mu.Unlock()
	for attempt := 0; attempt < 3; attempt++ {
		if old > size {
			return fmt.Errorf("witness %s: %w: it holds a checkpoint of %d records, this one has %d (the log was rolled back or forked)", name, ErrInconsistent, old, size)
		}
		var proof tlog.TreeProof
		if old > 0 && old < size {
			var err error
			if proof, err = log.ProveConsistency(old, size); err != nil {
				return fmt.Errorf("witness %s: %w", name, err)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
		lines, err := cl.AddCheckpoint(rctx, old, proof, signed)
		cancel()
		var conflict *ConflictError
		switch {
		case err == nil:
			if err := log.AddCosignatures(size, lines); err != nil {
				return fmt.Errorf("witness %s: %w", name, err)
			}
			c.learn(log, name, size)
			c.mu.Lock()
			c.stats[name].cosigned++
			c.mu.Unlock()
			return nil
		case errors.As(err, &conflict):
			if conflict.Size == old {
				// Same size as ours but another root (or a witness that
				// contradicts itself): it will never cosign this tree.
				return fmt.Errorf("witness %s: %w: it holds another tree of %d records (409)", name, ErrInconsistent, old)
			}
			c.log.Info("witness holds another size; retrying with its size", "witness", name, "believed", old, "holds", conflict.Size)
			old = conflict.Size
			c.learn(log, name, old)
		default:
			return err
		}
	}
	return fmt.Errorf("witness %s: still conflicting after 3 attempts", name)
}

// learn records that witness name holds size records.
func (c *Cosigner) learn(log Log, name string, size int64) {
	c.mu.Lock()
	c.stats[name].size = size
	c.mu.Unlock()
	if err := log.SetWitnessSize(name, size); err != nil {
		c.log.Error("witness: recording the size it holds", "witness", name, "err", err)
	}
}

func (c *Cosigner) fail(name string, err error) {
	c.mu.Lock()
	c.stats[name].failures++
	c.lastErrs()[name] = err
	c.mu.Unlock()
	c.log.Warn("witness did not cosign the checkpoint; will retry", "witness", name, "err", err)
}

// fork records and reports loudly that a witness found the log
// inconsistent with what it saw before.
func (c *Cosigner) fork(name string, size int64, err error) {
	c.mu.Lock()
	c.stats[name].inconsistents++
	c.forks[name] = fmt.Sprintf("checkpoint of %d records: %v", size, err)
	c.lastErrs()[name] = err
	c.mu.Unlock()
	if c.o.OnFork != nil {
		c.o.OnFork(name)
	}
	c.log.Error("LOG FORK OR ROLLBACK: a witness refuses the log's checkpoint as inconsistent with the history it cosigned; the log on this host was rewritten, or this is another log with the same key and origin",
		"witness", name, "size", size, "err", err)
}

// lastErrs returns the map of the last error per witness (c.mu held).
func (c *Cosigner) lastErrs() map[string]error {
	if c.errs == nil {
		c.errs = map[string]error{}
	}
	return c.errs
}

// Forks returns how many checkpoints each witness refused as
// inconsistent.
func (c *Cosigner) Forks() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for n, s := range c.stats {
		out[n] = s.inconsistents
	}
	return out
}

// Health returns an error naming each witness that found the log
// inconsistent (a fork or rollback), nil if none did.
func (c *Cosigner) Health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.forks) == 0 {
		return nil
	}
	names := make([]string, 0, len(c.forks))
	for n := range c.forks {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("log fork or rollback: witnesses refuse the log as inconsistent:")
	for _, n := range names {
		fmt.Fprintf(&b, " %s (%s);", n, c.forks[n])
	}
	return errors.New(strings.TrimSuffix(b.String(), ";"))
}

// WritePrometheus writes the per-witness metrics in Prometheus text
// format. Forks are counted through Options.OnFork, and in
// [Cosigner.Forks].
func (c *Cosigner) WritePrometheus(w io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.stats))
	for n := range c.stats {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	series := func(metric, help, typ string, v func(*witnessStats) int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, typ)
		for _, n := range names {
			fmt.Fprintf(&b, "%s{witness=%s} %d\n", metric, strconv.Quote(n), v(c.stats[n]))
		}
	}
	series("sessctl_witness_cosignatures_total", "Checkpoints the witness cosigned.", "counter", func(s *witnessStats) int64 { return s.cosigned })
	series("sessctl_witness_failures_total", "add-checkpoint requests that failed (timeout, refusal, error).", "counter", func(s *witnessStats) int64 { return s.failures })
	series("sessctl_witness_tree_size", "Size of the checkpoint the witness holds, as far as sessctl knows.", "gauge", func(s *witnessStats) int64 { return s.size })
	fmt.Fprintf(&b, "# HELP sessctl_checkpoint_cosignatures Cosignatures on the newest checkpoint sent to the witnesses.\n# TYPE sessctl_checkpoint_cosignatures gauge\nsessctl_checkpoint_cosignatures %d\n", c.lastCount)
	fmt.Fprintf(&b, "# HELP sessctl_witness_quorum Cosignatures a checkpoint needs.\n# TYPE sessctl_witness_quorum gauge\nsessctl_witness_quorum %d\n", c.o.Quorum)
	_, err := io.WriteString(w, b.String())
	return err
}

// checkpointSize returns the tree size line of a signed checkpoint.
func checkpointSize(signed []byte) (int64, error) {
	lines := strings.SplitN(string(signed), "\n", 4)
	if len(lines) < 4 {
		return 0, errors.New("witness: checkpoint too short")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return 0, fmt.Errorf("witness: checkpoint size %q", lines[1])
	}
	return n, nil
}
