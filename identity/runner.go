package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sessctl/sessctl/internal/keyfile"
)

// RunnerTokenPrefix starts every runner token made by NewRunnerToken.
const RunnerTokenPrefix = "sct_"

// minClearTokenLen is the shortest clear-text runner token accepted without
// a warning.
const minClearTokenLen = 16

// Runner is a static runner credential as configured. Either TokenSHA256
// (hex SHA-256 of the token, the recommended form) or Token (the token in
// clear) is set; only the hash is kept in memory.
type Runner struct {
	Name        string `yaml:"name"`
	TokenSHA256 string `yaml:"token_sha256,omitempty"`
	Token       string `yaml:"token,omitempty"`
}

// runnerEntry is a compiled Runner.
type runnerEntry struct {
	name string
	hash [sha256.Size]byte
}

// Hash returns the SHA-256 of the runner's token, from Token (in clear) or
// TokenSHA256 (hex), checking that exactly one of them is well formed.
func (r Runner) Hash() ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	switch {
	case r.Token != "" && r.TokenSHA256 != "":
		return h, fmt.Errorf("%q: set token or token_sha256, not both", r.Name)
	case r.Token != "":
		if strings.TrimSpace(r.Token) != r.Token {
			return h, fmt.Errorf("%q: token has leading or trailing space", r.Name)
		}
		return sha256.Sum256([]byte(r.Token)), nil
	case r.TokenSHA256 != "":
		b, err := hex.DecodeString(r.TokenSHA256)
		if err != nil || len(b) != sha256.Size {
			return h, fmt.Errorf("%q: token_sha256 is not 64 hex digits", r.Name)
		}
		copy(h[:], b)
		return h, nil
	}
	return h, fmt.Errorf("%q: missing token_sha256", r.Name)
}

// compileRunners validates runners and keeps only names and hashes.
func compileRunners(runners []Runner, log *slog.Logger) ([]runnerEntry, error) {
	out := make([]runnerEntry, 0, len(runners))
	names := make(map[string]bool, len(runners))
	hashes := make(map[[sha256.Size]byte]string, len(runners))
	for i, r := range runners {
		if r.Name == "" {
			return nil, fmt.Errorf("identity: runner #%d: missing name", i+1)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("identity: runner %q: duplicate name", r.Name)
		}
		names[r.Name] = true
		var e runnerEntry
		e.name = r.Name
		if r.Token != "" && len(r.Token) < minClearTokenLen {
			log.Warn("identity: runner token is short; use `sessctl token new`", "runner", r.Name)
		}
		h, err := r.Hash()
		if err != nil {
			return nil, fmt.Errorf("identity: runner %w", err)
		}
		e.hash = h
		if other, dup := hashes[e.hash]; dup {
			return nil, fmt.Errorf("identity: runners %q and %q have the same token", other, r.Name)
		}
		hashes[e.hash] = r.Name
		out = append(out, e)
	}
	return out, nil
}

// matchRunner compares sum with every runner hash in constant time and
// returns the match, or nil.
func (a *Authenticator) matchRunner(sum [sha256.Size]byte) *runnerEntry {
	var found *runnerEntry
	for i := range a.runners {
		if subtle.ConstantTimeCompare(sum[:], a.runners[i].hash[:]) == 1 {
			found = &a.runners[i]
		}
	}
	return found
}

// NewRunnerToken returns a fresh random runner token: RunnerTokenPrefix
// followed by 32 random bytes in unpadded base64url.
func NewRunnerToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("identity: new runner token: %w", err)
	}
	return RunnerTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// runnersFile is the layout of a runners file.
type runnersFile struct {
	Runners []Runner `yaml:"runners"`
}

// LoadRunnersFile reads a runners file, a YAML document of the form
//
//	runners:
//	  - name: ci-1
//	    token_sha256: 5e884898...
//
// A missing file is no runners and no error. Unknown keys are errors.
func LoadRunnersFile(path string) ([]Runner, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read runners file: %w", err)
	}
	var f runnersFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("identity: parse runners file %s: %w", path, err)
	}
	if _, err := compileRunners(f.Runners, slog.New(slog.DiscardHandler)); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return f.Runners, nil
}

// AddRunner appends r to the runners file at path, creating the file (mode
// 0600, its directory 0700) if needed. Existing entries and comments are
// kept; the file is replaced atomically and left with mode 0600. r must
// carry TokenSHA256, never a clear token, and its name must be new.
func AddRunner(path string, r Runner) error {
	if r.Token != "" {
		return fmt.Errorf("identity: add runner %q: refusing to write a token in clear", r.Name)
	}
	if _, err := compileRunners([]Runner{r}, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("identity: read runners file: %w", err)
	}
	existing, err := LoadRunnersFile(path)
	if err != nil {
		return err
	}
	for _, e := range existing {
		if e.Name == r.Name {
			return fmt.Errorf("identity: runner %q already exists in %s", r.Name, path)
		}
	}
	out, err := appendRunnerYAML(data, r)
	if err != nil {
		return fmt.Errorf("identity: update runners file %s: %w", path, err)
	}
	return writeFileAtomic(path, out)
}

// appendRunnerYAML adds r to the runners sequence of the YAML document
// data, keeping the rest of the document.
func appendRunnerYAML(data []byte, r Runner) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, HeadComment: "sessctl runners: add with `sessctl token new --name NAME`",
			Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("top level is not a mapping")
	}
	var seq *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "runners" {
			seq = root.Content[i+1]
		}
	}
	if seq == nil {
		seq = &yaml.Node{Kind: yaml.SequenceNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "runners"}, seq)
	}
	if seq.Kind == yaml.ScalarNode && seq.Tag == "!!null" {
		*seq = yaml.Node{Kind: yaml.SequenceNode}
	}
	if seq.Kind != yaml.SequenceNode {
		return nil, errors.New("runners is not a list")
	}
	var item yaml.Node
	if err := item.Encode(Runner{Name: r.Name, TokenSHA256: r.TokenSHA256}); err != nil {
		return nil, err
	}
	seq.Style = 0
	seq.Content = append(seq.Content, &item)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFileAtomic writes data to path with mode 0600 (its directory
// created 0700), atomically and durably.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identity: create %s: %w", dir, err)
	}
	if err := keyfile.WriteAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}
