package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/store"
)

// A prefilled log: sessctl's data directory holding a log of many records
// before the run starts, so that memory and speed are measured on a log of
// the size a gate has after months of CI traffic, not on an empty one.
//
// The log is generated once per record count with the store package's
// public API (store.Open, Append; no traffic) in a data directory that
// `sessctl serve` created itself (CA, log key, genesis), and cached under
// the work directory as log-N/. Each sessctl path then gets a fresh copy.

// logMeta describes a cached log; it is written last, so a cache without
// it is incomplete and is generated again.
type logMeta struct {
	Records int `json:"records"`
	// GenerateS is how long generating the records took (store.Append
	// from 64 goroutines, fsync off), not counting sessctl's first start.
	GenerateS float64 `json:"generate_s"`
	Bytes     int64   `json:"bytes"`
	Generated string  `json:"generated"`
}

// prefill is what a run reports about its prefilled log.
type prefill struct {
	Records   int     `json:"records"`
	Bytes     int64   `json:"bytes"`
	GenerateS float64 `json:"generate_s"`
	// Reused says whether the cached log of an earlier run was used (its
	// GenerateS is then that run's).
	Reused bool   `json:"reused"`
	Cache  string `json:"cache"`
	// CopyS is the time of each fresh copy, by path.
	CopyS map[string]float64 `json:"copy_s,omitempty"`
}

// cachedLog returns the data directory of a cached log of n records under
// work, generating it first when there is none. bin is the sessctl binary
// that creates the directory; tok its runner and admin tokens.
func cachedLog(ctx context.Context, bin, work string, n int, tok tokens, log *slog.Logger) (string, *prefill, error) {
	dir := filepath.Join(work, fmt.Sprintf("log-%d", n))
	data := filepath.Join(dir, "data")
	if b, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil {
		var m logMeta
		if json.Unmarshal(b, &m) == nil && m.Records == n {
			log.Info("reusing the cached log", "records", n, "dir", dir, "generated_in_s", fmt.Sprintf("%.0f", m.GenerateS))
			return data, &prefill{Records: n, Bytes: m.Bytes, GenerateS: m.GenerateS, Reused: true, Cache: dir}, nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, fmt.Errorf("log cache: %w", err)
	}
	tmp := dir + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return "", nil, fmt.Errorf("log cache: %w", err)
	}
	tmpData := filepath.Join(tmp, "data")
	if err := initDataDir(ctx, bin, tmpData, tok); err != nil {
		return "", nil, err
	}
	log.Info("generating a log (once; cached for later runs)", "records", n, "dir", dir)
	start := time.Now()
	if err := fillLog(ctx, tmpData, n, tok, func(done int) {
		log.Info("generating", "records", done, "of", n, "elapsed_s", fmt.Sprintf("%.0f", time.Since(start).Seconds()))
	}); err != nil {
		return "", nil, err
	}
	m := logMeta{Records: n, GenerateS: time.Since(start).Seconds(), Generated: time.Now().UTC().Format(time.RFC3339)}
	m.Bytes, _ = dirSize(tmpData)
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o644); err != nil {
		return "", nil, fmt.Errorf("log cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", nil, fmt.Errorf("log cache: %w", err)
	}
	log.Info("generated the log", "records", n, "seconds", fmt.Sprintf("%.1f", m.GenerateS), "MiB", m.Bytes>>20)
	return data, &prefill{Records: n, Bytes: m.Bytes, GenerateS: m.GenerateS, Cache: dir}, nil
}

// initDataDir has `sessctl serve` create data (CA, log key, genesis
// record) as on a first run, then stops it.
func initDataDir(ctx context.Context, bin, data string, tok tokens) error {
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	p, err := startSessctlDir(ctx, bin, filepath.Dir(data), data, "sessctl-init", "127.0.0.1:1", "", tok)
	if err != nil {
		return fmt.Errorf("log cache: creating the data directory: %w", err)
	}
	p.Stop()
	if _, err := os.Stat(filepath.Join(data, "sessions.db")); err != nil {
		return fmt.Errorf("log cache: sessctl left no log: %w", err)
	}
	return nil
}

// fillLog appends n records to the log in data with store.Append from 64
// goroutines (group commit), fsync off, then syncs the file once.
// progress is called every 100,000 records.
func fillLog(ctx context.Context, data string, n int, tok tokens, progress func(done int)) error {
	db := filepath.Join(data, "sessions.db")
	s, err := store.Open(db, store.Options{
		SigningKeyFile: filepath.Join(data, "log.key"), // where serve keeps it
		NoSync:         true,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	g := newRecordGen(n, tok.runnerHash)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := s.Append(ctx, g.record(i)); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				if (i+1)%100_000 == 0 && progress != nil {
					progress(i + 1)
				}
			}
		}()
	}
	wg.Wait()
	if cerr := s.Close(); firstErr == nil {
		firstErr = cerr
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return fmt.Errorf("log cache: append: %w", firstErr)
	}
	return syncFile(db)
}

// recordGen makes the records of a generated log: what sessctl records for
// the benchmark's own traffic (runner-token identity, keep-alive
// connections of 20 exchanges, full recording with the masked prompt and
// answer), three non-streamed chat completions for each streamed one, and
// one exchange in 100 with a masked secret.
type recordGen struct {
	start      time.Time
	runnerHash string
	chatReq    []byte
	streamReq  []byte
	streamResp []byte
	deltas     []store.Delta
	conns      []string
}

func newRecordGen(n int, runnerHash string) *recordGen {
	g := &recordGen{
		// The log ends about now: one exchange every 10 ms.
		start:      time.Now().Add(-time.Duration(n) * 10 * time.Millisecond),
		runnerHash: runnerHash,
		chatReq:    chatBody(false),
		streamReq:  chatBody(true),
	}
	var sse []byte
	for i := 0; i < 20; i++ {
		c := chunk(i)
		sse = append(sse, c...)
		g.deltas = append(g.deltas, store.Delta{OffsetMS: int64(4 + 20*i), Size: len(c)})
	}
	g.streamResp = append(sse, "data: [DONE]\n\n"...)
	// Connection ids are uuid v7, one per 20 exchanges.
	for i := 0; i < n/20+1; i++ {
		g.conns = append(g.conns, uuid.Must(uuid.NewV7()).String())
	}
	return g
}

// record returns record i; it is safe for concurrent use.
func (g *recordGen) record(i int) *store.Record {
	start := g.start.Add(time.Duration(i) * 10 * time.Millisecond)
	r := &store.Record{
		Kind:      store.KindExchange,
		SessionID: uuid.Must(uuid.NewV7()).String(),
		Start:     start,
		End:       start.Add(2 * time.Millisecond),
		Identity:  store.Identity{Method: "runner_token", Runner: "bench", TokenHash: g.runnerHash},
		Conn:      store.Conn{ID: g.conns[i/20], Mode: "explicit", Client: "127.0.0.1:" + strconv.Itoa(40000+i/20%20000), Transport: "http"},
		Host:      apiHost,
		Provider:  "openai",
		Method:    "POST",
		Path:      "/v1/chat/completions",
		Model:     "gpt-4o-mini",
		Status:    200,
		Outcome:   store.OutcomeForwarded,
		Recording: store.RecordingFull,
		Usage:     &store.Usage{Input: 412, Output: 52, Total: 464},
	}
	if i%4 == 3 {
		r.End = start.Add(390 * time.Millisecond)
		r.RequestBody, r.ResponseBody = g.streamReq, g.streamResp
		r.Deltas = g.deltas
		r.Extra = map[string]string{"usage_requested": "true"}
	} else {
		r.RequestBody, r.ResponseBody = g.chatReq, []byte(chatAnswer)
	}
	if i%100 == 42 {
		var mac [32]byte
		rand.Read(mac[:])
		r.Rules = []store.RuleHit{{Name: "openai-key", Action: "mask", Scope: "request", Count: 1}}
		r.SecretHMACs = []string{hex.EncodeToString(mac[:])}
	}
	return r
}

// copyDataDir copies a data directory (files and modes: keys must stay
// 0600) from src to dst, which must not exist. It stops early when ctx is
// cancelled.
func copyDataDir(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, fi.Mode().Perm())
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		return copyFile(ctx, p, to, fi.Mode().Perm())
	})
}

func copyFile(ctx context.Context, src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	// io.CopyN between files uses copy_file_range on Linux; 64 MiB at a
	// time, so that an interrupt is not kept waiting. The copy is synced,
	// so that its writeback does not compete with the fsyncs of the run
	// that follows.
	for {
		if err := ctx.Err(); err != nil {
			out.Close()
			return err
		}
		_, err := io.CopyN(out, in, 64<<20)
		if err == io.EOF {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("log cache: sync: %w", err)
	}
	return f.Close()
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return n, err
}
