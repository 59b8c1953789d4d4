package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/store"
)

// TestVerifyExportCommand exports a closed log with `sessctl sessions
// export` and checks the export offline with `sessctl verify --export`, as
// an auditor would, then tampers with it.
func TestVerifyExportCommand(t *testing.T) {
	dir := t.TempDir()
	db, cpFile := filepath.Join(dir, "sessions.db"), filepath.Join(dir, "checkpoints.txt")
	st, err := store.Open(db, store.Options{NoSync: true, CheckpointEvery: 3, CheckpointFile: cpFile,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	for i := range 8 {
		r := &store.Record{Kind: store.KindExchange, SessionID: fmt.Sprintf("s-%d", i), Start: start.Add(time.Duration(i) * time.Second),
			Identity: store.Identity{Method: "oidc", Claims: map[string]string{"repository": "acme/api", "run_id": "8812"}},
			Host:     "api.openai.com", Outcome: store.OutcomeForwarded, Recording: store.RecordingFull,
			RequestBody: []byte(`{"messages":[{"role":"user","content":"<script>alert(1)</script>"}]}`), ResponseBody: []byte("answer")}
		if _, err := st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(dir, "export.jsonl")
	if out, code := run(t, sessctlBin, "sessions", "export", "--db", db, "--bodies", "-o", export); code != 0 {
		t.Fatalf("sessions export: exit %d: %s", code, out)
	}
	data, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}

	// genesis + 8 + shutdown; checkpoints at 1, 4, 7, 10.
	okLine := regexp.MustCompile(`^ok: 10 records, checkpoint size 10, root [A-Za-z0-9+/]{43}=\n`)
	out, code := run(t, sessctlBin, "verify", "--export", export, "--checkpoint", cpFile)
	if code != 0 || !okLine.MatchString(out) || !strings.Contains(out, "pin it with --pubkey") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = run(t, sessctlBin, "verify", "--export", export, "--checkpoint", cpFile, "--pubkey", db+".key.pub")
	if code != 0 || !okLine.MatchString(out) || strings.Contains(out, "note:") {
		t.Fatalf("pinned: exit %d:\n%s", code, out)
	}
	// From standard input, as JSON.
	cmd := exec.Command(sessctlBin, "verify", "--export", "-", "--checkpoint", cpFile, "--json")
	cmd.Stdin = bytes.NewReader(data)
	jout, err := cmd.Output()
	if err != nil {
		t.Fatalf("--json: %v: %s", err, jout)
	}
	var rep store.ExportReport
	if err := json.Unmarshal(jout, &rep); err != nil || !rep.OK() || rep.Records != 10 || rep.Size != 10 || rep.Checkpoints != 4 {
		t.Fatalf("--json: %v %s", err, jout)
	}

	// Tampering is exit 1, one line per problem.
	tampered := filepath.Join(dir, "tampered.jsonl")
	if err := os.WriteFile(tampered, bytes.Replace(data, []byte(`"run_id":"8812"`), []byte(`"run_id":"8813"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, sessctlBin, "verify", "--export", tampered, "--checkpoint", cpFile)
	if code != 1 || !strings.HasPrefix(out, "record 1: modified") {
		t.Fatalf("tampered: exit %d:\n%s", code, out)
	}

	// Could not verify: exit 2.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no checkpoint file", []string{"--export", export}, "--export needs --checkpoint"},
		{"missing export", []string{"--export", filepath.Join(dir, "nope.jsonl"), "--checkpoint", cpFile}, "no such file"},
		{"other key", []string{"--export", export, "--checkpoint", cpFile, "--pubkey", otherLogKey(t)}, "not by the pinned key"},
	} {
		out, code := run(t, sessctlBin, append([]string{"verify"}, tc.args...)...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 2 and %q:\n%s", tc.name, code, tc.want, out)
		}
	}
}

// otherLogKey is the public key of another log.
func otherLogKey(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "other.db"), store.Options{NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return st.PublicKey()
}
