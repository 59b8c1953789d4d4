package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashImage copies the files of a running store to a new directory: what
// a crash (of the process or of the machine, once the flushes returned)
// would leave on disk. It returns the copy's database path and options.
func crashImage(t *testing.T, path string) (string, Options) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{path, journalPath(path), filepath.Join(filepath.Dir(path), "signing.key")} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cp := filepath.Join(dir, filepath.Base(path))
	return cp, Options{SigningKeyFile: filepath.Join(dir, "signing.key"), Logger: quietLogger(), CheckpointInterval: time.Hour}
}

// journalOptions keep records in the journal until the test is done
// with them: nothing is applied to the bbolt file on its own.
func journalOptions() Options {
	return Options{CheckpointInterval: time.Hour, applyDelay: time.Hour}
}

// A record is durable once Append returns, although only the journal
// holds it: a crash image of that moment reopens with every acknowledged
// record, its bodies and its place in the chain, an exchange whose note
// was waited for becomes an aborted record, and the log verifies.
func TestJournalReplayAfterCrash(t *testing.T) {
	s, path := openTest(t, journalOptions())
	ctx := context.Background()
	var acked []Receipt
	for i := range 5 {
		r := exchange(i)
		if i == 2 {
			r.RequestBody = bytes.Repeat([]byte("prompt "), 1000)
		}
		rc, err := s.Append(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, rc)
	}
	lost := exchange(9)
	wait, err := s.BeginQueued(ctx, lost)
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(s.unapplied); n == 0 {
		t.Fatal("nothing waits in the journal: the test would not test replay")
	}
	image, opts := crashImage(t, path)
	if _, err := OpenReader(image); err == nil || !strings.Contains(err.Error(), "not yet in the log") {
		t.Fatalf("OpenReader of a log with unapplied journal batches: %v", err)
	}
	c, err := Open(image, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, rc := range acked {
		r, req, _, err := c.Get(strconv.FormatUint(rc.Seq, 10))
		if err != nil {
			t.Fatalf("acknowledged record %d: %v", rc.Seq, err)
		}
		if r.SessionID != exchange(i).SessionID {
			t.Fatalf("record %d is %s, want %s", rc.Seq, r.SessionID, exchange(i).SessionID)
		}
		if i == 2 && !bytes.Equal(req, bytes.Repeat([]byte("prompt "), 1000)) {
			t.Fatalf("record %d: request body not kept (%d bytes)", rc.Seq, len(req))
		}
	}
	a, _, _, err := c.Get(lost.SessionID)
	if err != nil || a.Kind != KindAborted {
		t.Fatalf("noted exchange after the crash: %+v, %v", a, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, image, VerifyOptions{}); !rep.OK() {
		t.Fatal(rep.Problems)
	}
	// Applied once: reopening applies nothing again.
	c, err = Open(image, opts)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	c.List(Filter{Kind: KindExchange}, func(*Record) error { n++; return nil })
	c.Close()
	if n != 5 {
		t.Fatalf("%d exchange records after a second reopen, want 5", n)
	}
}

// A frame torn by the crash (never acknowledged: its flush did not
// return) ends the replay; the frames before it are applied.
func TestJournalTornFrame(t *testing.T) {
	s, path := openTest(t, journalOptions())
	ctx := context.Background()
	for i := range 3 {
		if _, err := s.Append(ctx, exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	end := s.jnl.off
	if _, err := s.Append(ctx, exchange(3)); err != nil {
		t.Fatal(err)
	}
	image, opts := crashImage(t, path)
	f, err := os.OpenFile(journalPath(image), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, end+20); err != nil { // in the last frame's payload
		t.Fatal(err)
	}
	f.Close()
	c, err := Open(image, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	c.List(Filter{Kind: KindExchange}, func(r *Record) error { got = append(got, r.SessionID); return nil })
	c.Close()
	if len(got) != 3 {
		t.Fatalf("%d exchanges after a torn last frame, want the 3 before it", len(got))
	}
	if rep := mustVerify(t, image, VerifyOptions{}); !rep.OK() {
		t.Fatal(rep.Problems)
	}
}

// Frames are written again from the start once applied: a crash image
// after that holds the new frames and, behind them, old ones, which are
// not applied twice.
func TestJournalRewind(t *testing.T) {
	s, path := openTest(t, journalOptions())
	ctx := context.Background()
	for i := range 6 {
		if _, err := s.Append(ctx, exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if s.jnl.off != journalHeaderSize || len(s.unapplied) != 0 {
		t.Fatalf("after apply: journal offset %d, %d unapplied", s.jnl.off, len(s.unapplied))
	}
	if _, err := s.Append(ctx, exchange(6)); err != nil {
		t.Fatal(err)
	}
	image, opts := crashImage(t, path)
	c, err := Open(image, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	c.List(Filter{Kind: KindExchange}, func(r *Record) error { got = append(got, r.SessionID); return nil })
	c.Close()
	if len(got) != 7 {
		t.Fatalf("%d exchanges, want 7: %v", len(got), got)
	}
	if rep := mustVerify(t, image, VerifyOptions{}); !rep.OK() {
		t.Fatal(rep.Problems)
	}
}

// A clean Close leaves everything in the bbolt file and removes the
// journal: the file alone is the log, and an older copy of it can be put
// back.
func TestJournalRemovedOnClose(t *testing.T) {
	s, path := openTest(t, journalOptions())
	if _, err := s.Append(context.Background(), exchange(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journalPath(path)); err != nil {
		t.Fatalf("journal while open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journalPath(path)); !os.IsNotExist(err) {
		t.Fatalf("journal after a clean close: %v", err)
	}
	if rep := mustVerify(t, path, VerifyOptions{}); !rep.OK() || rep.Records != 3 {
		t.Fatalf("verify: %d records, %v", rep.Records, rep.Problems)
	}
}

// A journal that is not the log's own, or that misses batches the log
// needs, stops Open with a clear error instead of being skipped.
func TestJournalMismatch(t *testing.T) {
	s, path := openTest(t, journalOptions())
	if _, err := s.Append(context.Background(), exchange(1)); err != nil {
		t.Fatal(err)
	}
	image, opts := crashImage(t, path)
	_, otherPath := openTest(t, Options{})
	other, err := os.ReadFile(journalPath(otherPath))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journalPath(image), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(image, opts); err == nil || !strings.Contains(err.Error(), "not of this log") {
		t.Fatalf("Open with another log's journal: %v", err)
	}

	// A first frame numbered past the log's next batch: batches are
	// missing.
	data, err := os.ReadFile(journalPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if frames, err := scanJournal(data, 0); err != nil || len(frames) != 1 {
		t.Fatalf("own journal: %d frames, %v", len(frames), err)
	}
	off := journalHeaderSize
	size := int(binary.LittleEndian.Uint32(data[off:]))
	p := data[off+8 : off+8+size]
	binary.BigEndian.PutUint64(p, binary.BigEndian.Uint64(p)+5)
	binary.LittleEndian.PutUint32(data[off+4:], crc32.Checksum(p, crcTable))
	if _, err := scanJournal(data, 0); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("journal with a gap: %v", err)
	}
}

// FuzzJournal feeds arbitrary bytes to the replay's reader: it must not
// panic, and whatever it accepts decodes or fails with an error.
func FuzzJournal(f *testing.F) {
	hdr := journalHeader("host/log")
	f.Add(append(bytes.Clone(hdr), 0, 0, 0, 0))
	frame := encodeBatch(nil, 1, []*job{{rec: &Record{SessionID: "s"}, pending: []byte(`{}`)}})
	f.Add(append(bytes.Clone(hdr), appendFrame(nil, frame)...))
	f.Fuzz(func(t *testing.T, tail []byte) {
		data := append(bytes.Clone(hdr), tail...)
		frames, err := scanJournal(data, 0)
		if err != nil {
			return
		}
		for _, p := range frames {
			decodeBatch(p)
		}
	})
}
