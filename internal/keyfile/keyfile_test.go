package keyfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPrivate(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		mode os.FileMode
		want string // "" for accepted
	}{
		{"owner only", 0o600, ""},
		{"owner read only", 0o400, ""},
		{"group readable", 0o640, "must not be accessible"},
		{"world readable", 0o644, "must not be accessible"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, []byte("k"), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			err := CheckPrivate(p)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("CheckPrivate(%v) = %v, want %q", tc.mode, err, tc.want)
			}
		})
	}
	if err := CheckPrivate(dir); err == nil {
		t.Error("a directory was accepted as a key file")
	}
	if err := CheckPrivate(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func TestWriteAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	for _, content := range []string{"first", "second"} {
		if err := WriteAtomic(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("content %q, %v; want %q", got, err, content)
		}
	}
	if err := CheckPrivate(p); err != nil {
		t.Errorf("written with 0600 but refused: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := WriteAtomic(filepath.Join(p, "under-a-file"), nil, 0o600); err == nil {
		t.Error("writing under a regular file succeeded")
	}
}
