package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Defaults for Options.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 10 * time.Second
)

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("store: closed")

// Options configure a Store.
type Options struct {
	// SigningKeyFile holds the Ed25519 note signer key for checkpoints.
	// It is created (mode 0600) if missing, and refused if its group or
	// others can read it. Default: the database path + ".key". The
	// public key is written beside it with the suffix ".pub".
	SigningKeyFile string
	// CheckpointEvery is the number of records between checkpoints
	// (default 1000).
	CheckpointEvery int
	// CheckpointInterval is the longest time a new record stays
	// unsigned (default 10s).
	CheckpointInterval time.Duration
	// CheckpointFile, if set, receives a copy of each signed checkpoint
	// (appended, fsynced).
	CheckpointFile string
	// OnCheckpoint, if set, is called (from the appender goroutine) with
	// each signed checkpoint, e.g. to POST it to a witness. It must not
	// block for long.
	OnCheckpoint func(signed []byte)
	// Logger receives operational messages; default slog.Default().
	Logger *slog.Logger
	// OnCommit, if set, is called (from the appender goroutine) after
	// each transaction that appends records, with the number of writes
	// it carried, how long it took, and its error. It must be quick.
	OnCommit func(writes int, took time.Duration, err error)
	// Progress, if set, is called now and then during long work on the
	// log (task "indexing" while Open builds the query indexes,
	// "pruning" during Prune) with the records done and the records to
	// do, for a progress line.
	Progress func(task string, done, total uint64)
	// NoSync disables fsync (bbolt NoSync) and the journal: records go
	// straight to the bbolt file. For tests and benchmarks only: a
	// record is then not durable when Append returns.
	NoSync bool

	// openFile replaces os.OpenFile for the database (tests).
	openFile func(string, int, os.FileMode) (*os.File, error)
	// indexEvery is the number of records whose index keys are held
	// back before they are written (tests; default defaultIndexEvery).
	indexEvery int
	// applyDelay is how long records wait in the journal before they are
	// applied to the bbolt file (tests; default applyDelay).
	applyDelay time.Duration
}

// Receipt acknowledges a durable record.
type Receipt struct {
	Seq  uint64
	Hash string // hex leaf hash
}

// Store is the single writer of a session log. Its methods are safe for
// concurrent use.
type Store struct {
	db     *bbolt.DB
	path   string
	opts   Options
	log    *slog.Logger
	signer note.Signer
	vkey   string
	origin string
	secret []byte

	jobs chan *job
	quit chan struct{}
	// urgent asks the appender to commit held in-flight notes now: someone
	// waits for one (see BeginQueued).
	urgent    chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	health atomic.Pointer[healthState]
	stats  stats // see Stats

	// Owned by the appender goroutine after Open returns.
	size       uint64
	head       tlog.Hash
	lastCP     uint64
	lastCPTime time.Time
	// indexedTo is meta/indexed: records below it are in the index; the
	// index keys of the others wait in ixKeys (see flushIndex).
	indexedTo uint64
	ixKeys    [][]byte
	// orphans are records of forwarded exchanges whose append failed,
	// as aborted records waiting for the store to write again (see
	// keepOrphans).
	orphans        []*Record
	orphansDropped int
	// failedNotes are the sessions whose in-flight note failed to commit
	// and whose record has not been written yet.
	failedNotes map[string]bool

	// jnl is the journal (nil with Options.NoSync). Records in it and
	// not yet in the bbolt file are unapplied, in order; size and head
	// count them, appliedSize and appliedHead do not.
	jnl          *journal
	batchNo      uint64 // the last batch written to the journal
	unapplied    []*job
	pendingBytes int
	appliedSize  uint64
	appliedHead  tlog.Hash
	// applyErr is the error of the last failed apply, until one works.
	applyErr error
	frame    []byte // reused journal payload buffer
	// flushes asks the appender to apply the journal now (readers).
	flushes chan chan error
}

type healthState struct{ err error }

// Open opens the log at path, creating it (with a genesis record binding
// the origin "<hostname>/<log uuid>" and the public key) if it does not
// exist. Reopening a log recomputes the head and root, checks them against
// the last signed checkpoint, and appends an aborted record for each
// exchange that was in flight (see [Store.Begin]) when the log was last
// closed.
func Open(path string, opts Options) (*Store, error) {
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.SigningKeyFile == "" {
		opts.SigningKeyFile = path + ".key"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.indexEvery <= 0 {
		opts.indexEvery = defaultIndexEvery
	}
	if opts.applyDelay <= 0 {
		opts.applyDelay = applyDelay
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:  time.Second,
		NoSync:   opts.NoSync,
		OpenFile: opts.openFile,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	s := &Store{
		db:          db,
		path:        path,
		opts:        opts,
		log:         opts.Logger.With("db", path),
		jobs:        make(chan *job),
		quit:        make(chan struct{}),
		urgent:      make(chan struct{}, 1),
		flushes:     make(chan chan error),
		done:        make(chan struct{}),
		failedNotes: make(map[string]bool),
	}
	s.health.Store(&healthState{})
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.openJournal(); err != nil {
		db.Close()
		return nil, err
	}
	s.lastCPTime = time.Now()
	s.publish()
	go s.appender()
	return s, nil
}

// openError turns bbolt's open errors into messages an operator can act on.
func openError(path string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return fmt.Errorf("store: open %s: database is in use / locked by another process (stop sessctl serve, or verify a snapshot)", path)
	case errors.As(err, &pe):
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	return fmt.Errorf("store: open %s: not a bbolt database or corrupt: %w", path, err)
}

// init creates a new log or recovers an existing one.
func (s *Store) init() error {
	var fresh, foreign bool
	if err := s.db.View(func(tx *bbolt.Tx) error {
		fresh = tx.Bucket(bucketMeta) == nil
		if fresh {
			// A bbolt file with other buckets is somebody else's.
			foreign = tx.ForEach(func([]byte, *bbolt.Bucket) error { return errStop }) != nil
		}
		return nil
	}); err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	if foreign {
		return fmt.Errorf("store: open %s: not a sessctl log (a bbolt database without sessctl's meta bucket)", s.path)
	}
	if fresh {
		return s.genesis()
	}
	return s.recover()
}

var errStop = errors.New("stop")

func (s *Store) genesis() error {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	logID, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("store: genesis: %w", err)
	}
	s.origin = sanitizeName(host) + "/" + logID.String()
	s.signer, s.vkey, err = loadOrCreateKey(s.opts.SigningKeyFile, s.origin)
	if err != nil {
		return err
	}
	s.secret = make([]byte, 32)
	if _, err := rand.Read(s.secret); err != nil {
		return fmt.Errorf("store: genesis: %w", err)
	}
	now := time.Now().UTC()
	g := &Record{
		Kind:  KindGenesis,
		Start: now,
		End:   now,
		Extra: map[string]string{
			"origin":     s.origin,
			"public_key": s.vkey,
			"log_id":     logID.String(),
			"format":     dbFormat,
		},
	}
	j, err := newJob(g)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketLeaves, bucketTree, bucketBodies, bucketCheckpoints, bucketSessions, bucketTimes, bucketPending, bucketIndex} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		for k, v := range map[string][]byte{
			string(metaFormat):    []byte(dbFormat),
			string(metaOrigin):    []byte(s.origin),
			string(metaPublicKey): []byte(s.vkey),
			string(metaSecret):    s.secret,
		} {
			if err := m.Put([]byte(k), v); err != nil {
				return err
			}
		}
		packAppendOnly(tx)
		st := chainState{}
		assign(&st, j)
		if err := s.applyTx(tx, &st, j); err != nil {
			return err
		}
		if err := s.flushIndex(tx, &st, true); err != nil {
			return err
		}
		return putHead(tx, st)
	})
	if err != nil {
		return fmt.Errorf("store: genesis %s: %w", s.path, err)
	}
	s.size, s.head, s.indexedTo = 1, j.hash, 1
	s.appliedSize, s.appliedHead = s.size, s.head
	s.log.Info("created session log", "origin", s.origin, "public_key", s.vkey)
	return s.checkpoint()
}

// sanitizeName makes a host name usable in a note key name (no spaces or
// plus signs).
func sanitizeName(host string) string {
	b := []byte(host)
	for i, c := range b {
		if c <= ' ' || c == '+' || c >= 0x7f {
			b[i] = '-'
		}
	}
	return string(b)
}

// recover reopens an existing log: it checks the key, recomputes the head
// and root from the stored leaves and tree, checks them against the last
// checkpoint, and turns pending exchanges into aborted records.
func (s *Store) recover() error {
	if err := s.replayJournal(); err != nil {
		return err
	}
	var pending []*Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if string(m.Get(metaFormat)) != dbFormat {
			return fmt.Errorf("unsupported format %q (want %q)", m.Get(metaFormat), dbFormat)
		}
		s.origin = string(m.Get(metaOrigin))
		s.secret = bytes.Clone(m.Get(metaSecret))
		metaKey := string(m.Get(metaPublicKey))
		leaves := tx.Bucket(bucketLeaves)
		if leaves == nil {
			return errors.New("no leaves bucket")
		}
		g := leaves.Get(u64key(0))
		if g == nil {
			return errors.New("genesis record missing")
		}
		gr, err := decodeLeafHeader(g)
		if err != nil {
			return fmt.Errorf("genesis record: %w", err)
		}
		if gr.Kind != KindGenesis || gr.Extra["public_key"] != metaKey || gr.Extra["origin"] != s.origin {
			return errors.New("genesis record does not match the log's metadata")
		}
		s.signer, s.vkey, err = loadOrCreateKey(s.opts.SigningKeyFile, s.origin)
		if err != nil {
			return err
		}
		if s.vkey != metaKey {
			return fmt.Errorf("signing key %s (%s) is not this log's key (%s)", s.opts.SigningKeyFile, s.vkey, metaKey)
		}
		k, last := leaves.Cursor().Last()
		if len(k) != 8 {
			return errors.New("leaves bucket has a malformed key")
		}
		s.size = binary.BigEndian.Uint64(k) + 1
		s.head = tlog.RecordHash(last)
		hr := bucketHashReader{tx.Bucket(bucketTree)}
		stored, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, int64(s.size-1))})
		if err != nil || stored[0] != s.head {
			return fmt.Errorf("last record %d does not match the stored tree; run sessctl verify", s.size-1)
		}
		if _, err := tlog.TreeHash(int64(s.size), hr); err != nil {
			return fmt.Errorf("tree: %w", err)
		}
		if err := s.checkLastCheckpoint(tx, hr); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			r := new(Record)
			if err := decodeStrict(v, r); err != nil {
				s.log.Warn("skipping unreadable pending entry", "session_id", string(k), "err", err)
				return nil
			}
			pending = append(pending, r)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: reopen %s: %w", s.path, err)
	}
	s.appliedSize, s.appliedHead = s.size, s.head
	if err := s.buildIndex(); err != nil {
		return err
	}
	for _, p := range pending {
		a := *p
		a.Kind = KindAborted
		a.Outcome = OutcomeAborted
		a.Reason = "in flight when sessctl stopped"
		if a.End.IsZero() || a.End.Before(a.Start) {
			a.End = time.Now().UTC()
		}
		j, err := newJob(&a)
		if err != nil {
			return err
		}
		if err := s.apply([]*job{j}, false); err != nil {
			return fmt.Errorf("store: reopen %s: record aborted exchange: %w", s.path, err)
		}
		s.log.Warn("exchange was in flight at last stop; recorded as aborted", "session_id", a.SessionID, "seq", j.rec.Seq)
	}
	if s.size > s.lastCP {
		return s.checkpoint()
	}
	return nil
}

// checkLastCheckpoint checks the newest stored checkpoint against the tree
// and sets lastCP.
func (s *Store) checkLastCheckpoint(tx *bbolt.Tx, hr tlog.HashReader) error {
	k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
	if k == nil {
		return nil
	}
	c, err := OpenCheckpoint(v, s.vkey)
	if err != nil {
		return fmt.Errorf("last checkpoint: %w; run sessctl verify", err)
	}
	if c.Origin != s.origin || uint64(c.Size) > s.size {
		return fmt.Errorf("last checkpoint (size %d) does not match the log (size %d); run sessctl verify", c.Size, s.size)
	}
	root, err := tlog.TreeHash(c.Size, hr)
	if err != nil || root != c.Root {
		return fmt.Errorf("log does not match its last checkpoint (size %d); run sessctl verify", c.Size)
	}
	s.lastCP = uint64(c.Size)
	return nil
}

// Origin returns the log's origin, "<hostname>/<log uuid>".
func (s *Store) Origin() string { return s.origin }

// PublicKey returns the note verifier key of the checkpoint signer.
func (s *Store) PublicKey() string { return s.vkey }

// SecretKey returns the per-log key for HMACs of masked secrets. It is
// generated at genesis and kept in the database.
func (s *Store) SecretKey() []byte { return bytes.Clone(s.secret) }

// Healthy returns nil while the store can write, the last write error
// after a failed write, and ErrClosed after Close. The proxy must refuse traffic while it is non-nil.
// The store retries in the background and becomes healthy again once a
// write succeeds.
func (s *Store) Healthy() error {
	return s.health.Load().err
}

func (s *Store) setHealth(err error) {
	old := s.health.Load().err
	if err != nil && old == nil {
		s.log.Error("session log write failed; refusing traffic until writes work", "err", err)
	}
	if err == nil && old != nil {
		s.log.Info("session log writable again")
	}
	s.health.Store(&healthState{err: err})
}

// Close appends a shutdown record, writes a final checkpoint and closes
// the database. Appends after Close fail with ErrClosed, and Healthy
// reports ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.done
		// A closed store can record nothing: refuse traffic.
		s.health.Store(&healthState{err: ErrClosed})
		if s.jnl != nil {
			if err := s.jnl.close(); err != nil && s.closeErr == nil {
				s.closeErr = fmt.Errorf("store: close %s: %w", s.jnl.path, err)
			}
			// Everything is in the bbolt file: the journal goes, so that
			// the file alone is the log (copied, or restored from a
			// backup).
			if s.closeErr == nil && len(s.unapplied) == 0 {
				if err := os.Remove(s.jnl.path); err != nil {
					s.closeErr = fmt.Errorf("store: close %s: %w", s.path, err)
				}
			}
		}
		if err := s.db.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("store: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}
