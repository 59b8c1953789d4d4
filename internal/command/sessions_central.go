package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/store"
)

// exportFleet exports the fleet's shipped logs: the log of origin alone
// (lines exactly as a replica's own export), or, with origin empty, every
// origin's in turn, each line naming its log in an "origin" member.
func exportFleet(ctx context.Context, w io.Writer, f *central.Fleet, origin string, o store.ExportOptions) (int, error) {
	if origin != "" {
		return store.Export(ctx, w, f, o)
	}
	origins, err := f.Origins(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, og := range origins {
		tw := &originWriter{w: w}
		tw.prefix, _ = json.Marshal(og)
		tw.prefix = append(append([]byte(`{"origin":`), tw.prefix...), ',')
		n, err := store.Export(ctx, tw, f.Only(og), o)
		total += n
		if err != nil {
			return total, fmt.Errorf("origin %s: %w", og, err)
		}
	}
	return total, nil
}

// originWriter adds an "origin" member at the start of each JSON line.
type originWriter struct {
	w      io.Writer
	prefix []byte // {"origin":"...",
	buf    []byte
}

func (t *originWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := t.buf[:i+1]
		if len(line) < 2 || line[0] != '{' {
			return 0, fmt.Errorf("export: unexpected line %.40q", line)
		}
		if _, err := t.w.Write(append(append([]byte{}, t.prefix...), line[1:]...)); err != nil {
			return 0, err
		}
		t.buf = t.buf[i+1:]
	}
}
