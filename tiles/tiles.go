// Package tiles serves a session log as a C2SP tlog-tiles log: the
// newest checkpoint (with its witnesses' cosignatures), the Merkle tree's
// hash tiles, and entry bundles holding each record's leaf, so that tools
// that are not sessctl (torchwood's client, tessera's fsck) can fetch and
// check the whole log against a witnessed checkpoint.
//
// Paths, relative to the handler's prefix:
//
//	GET checkpoint                      text/plain, not cached
//	GET tile/<L>/<N>[.p/<W>]            W×32 bytes of level-L hashes
//	GET tile/entries/<N>[.p/<W>]        entry bundle of records N·256 …
//
// <N> is written in groups of three digits, all but the last prefixed
// with x (tile/0/x001/234). The entry of a record is its leaf bytes
// (store/FORMAT.md §10): its RFC 6962 leaf hash is the record's hash in
// the tree. Tiles beyond the newest checkpoint are not served.
package tiles

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sessctl/sessctl/store"
)

// Source is the log the handler serves; *store.Store implements it.
type Source interface {
	// LatestCosigned returns the newest signed checkpoint with its
	// cosignatures, and its size.
	LatestCosigned() ([]byte, int64, error)
	// TileData returns the hashes of a hash tile.
	TileData(t tlog.Tile) ([]byte, error)
	// EntryBundle returns the entries of records n·256 to n·256+w-1.
	EntryBundle(n int64, w int) ([]byte, error)
}

// height is the tile height C2SP tlog-tiles fixes.
const height = 8

// Handler serves src as a tlog-tiles log. Mount it with the prefix
// stripped (http.StripPrefix).
func Handler(src Source, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return &handler{src: src, log: log}
}

type handler struct {
	src Source
	log *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	cp, size, err := h.src.LatestCosigned()
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, "the log has no checkpoint yet", http.StatusNotFound)
			return
		}
		h.log.Error("tiles: reading the checkpoint", "err", err)
		http.Error(w, "cannot read the log", http.StatusInternalServerError)
		return
	}
	if path == "checkpoint" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(cp)
		return
	}
	t, err := ParsePath(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	// The tile must lie within the checkpointed tree.
	level := t.L
	if level < 0 {
		level = 0
	}
	end := (t.N*256 + int64(t.W)) << (height * uint(level))
	if end > size || end < 0 {
		http.Error(w, "tile beyond the newest checkpoint", http.StatusNotFound)
		return
	}
	var data []byte
	if t.L < 0 {
		data, err = h.src.EntryBundle(t.N, t.W)
	} else {
		data, err = h.src.TileData(t)
	}
	if err != nil {
		if errors.Is(err, store.ErrEntryTooLarge) {
			// The tree is fine; this bundle cannot be written in the
			// tlog-tiles entry format (FORMAT.md §10). Not a 5xx, which
			// clients retry.
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		h.log.Error("tiles: reading a tile", "path", path, "err", err)
		http.Error(w, "cannot read the tile", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if t.W == 256 {
		w.Header().Set("Cache-Control", "max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Write(data)
}

// ParsePath parses a C2SP tlog-tiles tile path, "tile/<L>/<N>[.p/<W>]" or
// "tile/entries/<N>[.p/<W>]" (L = -1 in the result), into a tile of
// height 8.
func ParsePath(path string) (tlog.Tile, error) {
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return tlog.Tile{}, errors.New("not a tile path")
	}
	level, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return tlog.Tile{}, errors.New("not a tile path")
	}
	sumdb := "tile/8/"
	switch {
	case level == "entries":
		sumdb += "data/" + rest
	case level == "data":
		return tlog.Tile{}, errors.New("not a tile path")
	default:
		if n, err := strconv.Atoi(level); err != nil || n < 0 || n > 8 || strconv.Itoa(n) != level {
			return tlog.Tile{}, errors.New("bad tile level")
		}
		sumdb += level + "/" + rest
	}
	// The tile coordinates are those of the Go checksum database's
	// scheme with the height left out and "data" renamed "entries".
	t, err := tlog.ParseTilePath(sumdb)
	if err != nil || t.H != height {
		return tlog.Tile{}, errors.New("malformed tile path")
	}
	return t, nil
}

// Path returns the C2SP tlog-tiles path of t (height 8; L = -1 for an
// entry bundle).
func Path(t tlog.Tile) string {
	p := t.Path() // tile/8/<L or data>/<N>[.p/<W>]
	p = strings.TrimPrefix(p, "tile/8/")
	if rest, ok := strings.CutPrefix(p, "data/"); ok {
		return "tile/entries/" + rest
	}
	return "tile/" + p
}
