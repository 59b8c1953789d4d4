package proxy

import (
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// decodeBody returns the answer's body with any Content-Encoding removed,
// so that rules see plain text and the runner gets a correctly framed,
// unencoded body. Go's transport already decodes the gzip it asked for;
// this handles what an upstream sends regardless.
func decodeBody(resp *http.Response) (io.ReadCloser, error) {
	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if enc == "" || enc == "identity" {
		return resp.Body, nil
	}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	switch enc {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("upstream gzip body: %w", err)
		}
		return readCloser{zr, resp.Body}, nil
	case "deflate":
		zr, err := zlib.NewReader(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("upstream deflate body: %w", err)
		}
		return readCloser{zr, resp.Body}, nil
	case "br":
		return readCloser{brotli.NewReader(resp.Body), resp.Body}, nil
	case "zstd":
		zr, err := zstd.NewReader(resp.Body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return nil, fmt.Errorf("upstream zstd body: %w", err)
		}
		return readCloser{zr.IOReadCloser(), resp.Body}, nil
	}
	return nil, fmt.Errorf("upstream answer has unsupported Content-Encoding %q", enc)
}

type readCloser struct {
	io.Reader
	body io.Closer
}

func (r readCloser) Close() error {
	if c, ok := r.Reader.(io.Closer); ok {
		c.Close()
	}
	return r.body.Close()
}
