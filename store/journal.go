package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// The journal makes a batch of records durable with one write and one
// fdatasync, so that an exchange waits for one flush of the disk instead
// of a bbolt commit (which writes its pages, flushes, writes its meta
// page and flushes again). The batches are applied to the bbolt file
// later, many at a time, in an ordinary synced transaction; until then
// the journal is the only durable copy of them. After a crash, Open
// applies the batches that the bbolt file does not have before anything
// else.
//
// Layout of <log>.journal: a header block (journalMagic, the log's
// origin, zero padding to journalHeaderSize), then frames:
//
//	u32 length of payload | u32 CRC-32C of payload | payload
//
// payload:
//
//	u64 batch number | uvarint job count | jobs
//	job: 1 (record) | leaf | request body | response body | charges JSON
//	job: 2 (note)   | session id | in-flight note JSON
//
// where each variable field is a uvarint length and its bytes. Batch
// numbers grow by one per frame and never repeat; the bbolt file records
// the last batch it holds (meta/journal). Once every batch is applied,
// writing starts again at the first frame: what follows the newest frame
// is older frames, whose numbers are not the next one, so a scan stops
// there. The file is filled with zeros ahead of the write offset, so a
// frame overwrites allocated blocks and fdatasync has no size change to
// flush.
const (
	journalMagic      = "sessctl journal v1\n"
	journalHeaderSize = 4096
	// journalGrow is how far ahead of the write offset the file is
	// zero-filled.
	journalGrow = 1 << 20
	// maxJournalFrame bounds a frame: a larger batch (big bodies) is
	// applied to bbolt directly, where two flushes cost little next to
	// writing it.
	maxJournalFrame = 1 << 20
)

const (
	jobRecord = 1
	jobNote   = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// journal is the append side of a log's journal. It is used only by the
// appender goroutine.
type journal struct {
	f      *os.File
	path   string
	off    int64 // where the next frame goes
	filled int64 // the file is written (zeros or frames) up to here
	buf    []byte
}

// journalPath is where the journal of the log at path lives.
func journalPath(path string) string { return path + ".journal" }

func journalHeader(origin string) []byte {
	h := make([]byte, journalHeaderSize)
	copy(h, journalMagic+origin+"\n")
	return h
}

// openJournal opens the journal of the log at path for writing, creating
// it (mode 0600) if it does not exist. An existing journal must belong to
// origin; its frames must already be applied (see replayJournal).
func openJournal(path, origin string, openFile func(string, int, os.FileMode) (*os.File, error)) (*journal, error) {
	jp := journalPath(path)
	if openFile == nil {
		openFile = os.OpenFile
	}
	f, err := openFile(jp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: journal: %w", err)
	}
	j := &journal{f: f, path: jp, off: journalHeaderSize}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: journal %s: %w", jp, err)
	}
	if fi.Size() == 0 {
		if err := j.create(origin); err != nil {
			f.Close()
			return nil, err
		}
		return j, nil
	}
	head := make([]byte, journalHeaderSize)
	if _, err := io.ReadFull(f, head); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: journal %s: reading header: %w", jp, err)
	}
	if err := checkJournalHeader(head, origin); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: journal %s: %w", jp, err)
	}
	j.filled = fi.Size()
	return j, nil
}

func (j *journal) create(origin string) error {
	if _, err := j.f.WriteAt(journalHeader(origin), 0); err != nil {
		return fmt.Errorf("store: journal %s: %w", j.path, err)
	}
	j.filled = journalHeaderSize
	if err := j.fill(journalHeaderSize + journalGrow); err != nil {
		return err
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("store: journal %s: %w", j.path, err)
	}
	return syncDir(j.path)
}

func checkJournalHeader(head []byte, origin string) error {
	rest, ok := bytes.CutPrefix(head, []byte(journalMagic))
	if !ok {
		return errors.New("not a sessctl journal")
	}
	got, _, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return errors.New("damaged journal header")
	}
	if string(got) != origin {
		return fmt.Errorf("journal of log %q, not of this log (%q): it may hold records of that log; move it away only if that log is gone", got, origin)
	}
	return nil
}

// fill writes zeros from the filled end of the file up to n.
func (j *journal) fill(n int64) error {
	if n <= j.filled {
		return nil
	}
	zeros := make([]byte, 64<<10)
	for j.filled < n {
		c := min(int64(len(zeros)), n-j.filled)
		if _, err := j.f.WriteAt(zeros[:c], j.filled); err != nil {
			return fmt.Errorf("store: journal %s: %w", j.path, err)
		}
		j.filled += c
	}
	return nil
}

// append writes one frame and waits until it is on disk.
func (j *journal) append(payload []byte) error {
	n := int64(8 + len(payload))
	if j.off+n > j.filled {
		if err := j.fill(j.off + n + journalGrow); err != nil {
			return err
		}
	}
	j.buf = appendFrame(j.buf[:0], payload)
	if _, err := j.f.WriteAt(j.buf, j.off); err != nil {
		return fmt.Errorf("store: append to %s: %w", j.path, err)
	}
	if err := fdatasync(j.f); err != nil {
		return fmt.Errorf("store: append to %s: %w", j.path, err)
	}
	j.off += n
	if cap(j.buf) > 4*maxJournalFrame {
		j.buf = nil
	}
	return nil
}

// appendFrame appends the frame of payload to buf.
func appendFrame(buf, payload []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(payload)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(payload, crcTable))
	return append(buf, payload...)
}

// rewind starts writing at the first frame again. Only once every frame
// written so far is applied (and the bbolt file says so durably).
func (j *journal) rewind() { j.off = journalHeaderSize }

func (j *journal) close() error { return j.f.Close() }

// encodeBatch is the payload of a frame holding batch number no.
func encodeBatch(buf []byte, no uint64, batch []*job) []byte {
	buf = binary.BigEndian.AppendUint64(buf[:0], no)
	n := 0
	for _, j := range batch {
		if journaled(j) {
			n++
		}
	}
	buf = binary.AppendUvarint(buf, uint64(n))
	for _, j := range batch {
		switch {
		case !journaled(j):
		case j.pending != nil:
			buf = append(buf, jobNote)
			buf = appendField(buf, []byte(j.rec.SessionID))
			buf = appendField(buf, j.pending)
		default:
			buf = append(buf, jobRecord)
			buf = appendField(buf, j.leaf)
			buf = appendField(buf, j.req)
			buf = appendField(buf, j.resp)
			buf = appendField(buf, j.chargesJSON)
		}
	}
	return buf
}

// journaled reports whether j goes into a journal frame: records and
// notes (a note whose record is in the same batch is dropped before).
func journaled(j *job) bool {
	return j.fn == nil && j.rec != nil && !j.moot
}

func appendField(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// frameSize estimates the payload size of batch, before its records are
// placed in the chain.
func frameSize(batch []*job) int {
	n := 16
	for _, j := range batch {
		n += 1 + 5*binary.MaxVarintLen32 + len(j.pre) + 100 + len(j.req) + len(j.resp) + len(j.pending) + len(j.chargesJSON) + 64
	}
	return n
}

// scanJournal returns the payloads of the frames of data (a whole journal
// file) whose batch numbers follow applied, in order. It stops at the
// first frame that is torn, zero or out of sequence. Frames numbered
// applied or below were applied already.
func scanJournal(data []byte, applied uint64) ([][]byte, error) {
	var out [][]byte
	var prev uint64
	first := true
	for off := journalHeaderSize; off+8 <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n < 9 || n > maxJournalFrame || off+8+n > len(data) {
			break
		}
		p := data[off+8 : off+8+n]
		if crc32.Checksum(p, crcTable) != sum {
			break
		}
		no := binary.BigEndian.Uint64(p)
		if !first && no != prev+1 {
			break
		}
		first, prev = false, no
		if no > applied {
			if len(out) == 0 && no != applied+1 {
				return nil, fmt.Errorf("journal starts at batch %d but the log holds batches up to %d: batches are missing, or the log file is older than its journal (restored from a backup?); if it was restored on purpose, move the journal away", no, applied)
			}
			out = append(out, p)
		}
		off += 8 + n
	}
	return out, nil
}

// decodeBatch turns a frame's payload back into jobs.
func decodeBatch(p []byte) (uint64, []*job, error) {
	d := fieldReader{b: p[8:]}
	no := binary.BigEndian.Uint64(p)
	count := d.uvarint()
	if d.err != nil || count > uint64(len(p)) {
		return 0, nil, fmt.Errorf("batch %d: malformed", no)
	}
	jobs := make([]*job, 0, count)
	for i := uint64(0); i < count && d.err == nil; i++ {
		switch d.byte() {
		case jobRecord:
			j := &job{leaf: d.field(), req: d.field(), resp: d.field(), chargesJSON: d.field()}
			if d.err != nil {
				break
			}
			rec, err := DecodeLeaf(j.leaf)
			if err != nil {
				return 0, nil, fmt.Errorf("batch %d: %w", no, err)
			}
			if len(j.chargesJSON) > 0 {
				if err := json.Unmarshal(j.chargesJSON, &j.charges); err != nil {
					return 0, nil, fmt.Errorf("batch %d: charges: %w", no, err)
				}
			}
			j.rec, j.hash = rec, tlog.RecordHash(j.leaf)
			jobs = append(jobs, j)
		case jobNote:
			id, note := d.field(), d.field()
			if d.err == nil {
				jobs = append(jobs, &job{rec: &Record{SessionID: string(id)}, pending: note})
			}
		default:
			d.err = errors.New("unknown job type")
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return 0, nil, fmt.Errorf("batch %d: malformed", no)
	}
	return no, jobs, nil
}

type fieldReader struct {
	b   []byte
	err error
}

func (r *fieldReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = io.ErrUnexpectedEOF
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *fieldReader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = io.ErrUnexpectedEOF
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fieldReader) field() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = io.ErrUnexpectedEOF
		return nil
	}
	f := r.b[:n:n]
	r.b = r.b[n:]
	if n == 0 {
		return nil
	}
	return f
}

// readJournal reads the journal of the log at path and returns the
// payloads not yet applied. A missing journal has none.
func readJournal(path, origin string, applied uint64) ([][]byte, error) {
	data, err := os.ReadFile(journalPath(path))
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(data) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: journal: %w", err)
	}
	if len(data) < journalHeaderSize {
		return nil, fmt.Errorf("store: journal %s: shorter than its header", journalPath(path))
	}
	if err := checkJournalHeader(data[:journalHeaderSize], origin); err != nil {
		return nil, fmt.Errorf("store: journal %s: %w", journalPath(path), err)
	}
	frames, err := scanJournal(data, applied)
	if err != nil {
		return nil, fmt.Errorf("store: journal %s: %w", journalPath(path), err)
	}
	return frames, nil
}

// syncDir flushes the directory holding name, so that a new file in it
// survives a crash.
func syncDir(name string) error {
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return fmt.Errorf("store: sync directory of %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync directory of %s: %w", name, err)
	}
	return nil
}

// openJournal opens the journal for the appender, once the bbolt file
// holds every batch of it (see replayJournal).
func (s *Store) openJournal() error {
	s.appliedSize, s.appliedHead = s.size, s.head
	if s.opts.NoSync {
		return nil
	}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaJournal); len(v) == 8 {
			s.batchNo = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	j, err := openJournal(s.path, s.origin, s.opts.openFile)
	if err != nil {
		return err
	}
	s.jnl = j
	return nil
}

// replayJournal applies the journal's batches that the bbolt file does not
// hold: records that were durable when sessctl stopped without closing
// the log. It runs before anything else reads the bbolt file.
func (s *Store) replayJournal() error {
	var origin string
	var applied, size uint64
	var head tlog.Hash
	if err := s.db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		origin = string(m.Get(metaOrigin))
		if v := m.Get(metaJournal); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		v := m.Get(metaHead)
		if len(v) != 8+tlog.HashSize {
			return errors.New("meta/head missing or malformed")
		}
		size = binary.BigEndian.Uint64(v)
		copy(head[:], v[8:])
		return nil
	}); err != nil {
		return fmt.Errorf("store: reopen %s: %w", s.path, err)
	}
	frames, err := readJournal(s.path, origin, applied)
	if err != nil || len(frames) == 0 {
		return err
	}
	var all []*job
	last := applied
	for _, f := range frames {
		no, jobs, err := decodeBatch(f)
		if err != nil {
			return fmt.Errorf("store: journal %s: %w", journalPath(s.path), err)
		}
		all, last = append(all, jobs...), no
	}
	records := 0
	for _, j := range all {
		if j.pending == nil {
			records++
		}
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		packAppendOnly(tx)
		st := chainState{size: size, head: head}
		if err := s.applyJobs(tx, &st, all); err != nil {
			return err
		}
		// The index keys are left to buildIndex, which reads the
		// records after meta/indexed.
		if err := tx.Bucket(bucketMeta).Put(metaJournal, u64key(last)); err != nil {
			return err
		}
		return putHead(tx, st)
	})
	if err != nil {
		return fmt.Errorf("store: reopen %s: applying the journal: %w", s.path, err)
	}
	s.log.Warn("applied records from the journal (sessctl stopped without closing the log)", "batches", len(frames), "records", records)
	return nil
}

// flush asks the appender to apply the journal, so that a reader of the
// bbolt file sees every record appended before it asked.
func (s *Store) flush() error {
	if s.jnl == nil {
		return nil
	}
	ch := make(chan error, 1)
	select {
	case s.flushes <- ch:
	case <-s.quit:
		return nil // Close applies everything
	}
	select {
	case err := <-ch:
		return err
	case <-s.done:
		return nil
	}
}

// checkJournalApplied fails when the journal of the log at path holds
// records that its bbolt file (whose meta bucket is m) does not: a reader
// of the bbolt file alone would miss records that were acknowledged.
func checkJournalApplied(path string, m *bbolt.Bucket) error {
	var applied uint64
	if v := m.Get(metaJournal); len(v) == 8 {
		applied = binary.BigEndian.Uint64(v)
	}
	frames, err := readJournal(path, string(m.Get(metaOrigin)), applied)
	if err != nil {
		return err
	}
	if len(frames) > 0 {
		return fmt.Errorf("%d batches of records in %s are not yet in the log (sessctl stopped without closing it): start sessctl serve once, which applies them, then retry", len(frames), journalPath(path))
	}
	return nil
}
