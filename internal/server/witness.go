package server

import (
	"context"
	"io"
	"log/slog"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/witness"
)

// newCosigner returns the cosigner of cfg's witnesses, nil without any;
// onFork counts a witness's refusal of the log as inconsistent
// (sessctl_witness_fork_total).
func newCosigner(cfg *config.Config, log *slog.Logger, onFork func()) (*witness.Cosigner, error) {
	if len(cfg.Witnesses) == 0 {
		return nil, nil
	}
	return witness.New(witness.Options{Witnesses: cfg.Witnesses, Quorum: cfg.WitnessQuorum, Logger: log,
		OnFork: func(string) { onFork() }})
}

// checkpointHook returns the store's checkpoint hook: post (may be nil),
// then the cosigner. A checkpoint is queued for the cosigner's loop; once
// the server is closing (the loop has stopped) the final checkpoint,
// written by Close, is sent to the witnesses at once (bounded by their
// timeout), so that a stopped log ends cosigned.
func (s *server) checkpointHook(post func([]byte)) func([]byte) {
	if s.cos == nil {
		return post
	}
	return func(signed []byte) {
		if post != nil {
			post(signed)
		}
		if !s.closing.Load() {
			s.cos.Submit(signed)
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), witness.DefaultTimeout)
		defer cancel()
		if n, err := s.cos.Cosign(cctx, s.store, signed); err != nil {
			s.log.Warn("the final checkpoint was not cosigned by every witness", "cosignatures", n, "err", err)
		}
	}
}

// runCosigner sends the newest checkpoint, then each new one, to the
// witnesses until ctx is done.
func runCosigner(ctx context.Context, cos *witness.Cosigner, st *store.Store) {
	if cp, _, err := st.LatestCosigned(); err == nil {
		cos.Submit(cp)
	}
	cos.Run(ctx, st)
}

// healthWith adds the witnesses' verdict (a fork is unhealthy) to the
// store's health.
func healthWith(h func() error, cos *witness.Cosigner) func() error {
	if cos == nil {
		return h
	}
	return func() error {
		if err := h(); err != nil {
			return err
		}
		return cos.Health()
	}
}

// metricsWith adds the witness metrics.
func metricsWith(m func(io.Writer) error, cos *witness.Cosigner) func(io.Writer) error {
	if cos == nil {
		return m
	}
	return func(w io.Writer) error {
		if err := m(w); err != nil {
			return err
		}
		return cos.WritePrometheus(w)
	}
}
