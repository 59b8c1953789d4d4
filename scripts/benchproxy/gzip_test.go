package main

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAcceptsGzip(t *testing.T) {
	cases := []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"gzip, deflate, br"}, true},
		{[]string{"deflate", "GZIP;q=0.5"}, true},
		{[]string{"br, gzip;q=0"}, false},
		{[]string{"gzip; q=0.000"}, false},
		{[]string{"*"}, true},
		{[]string{"identity"}, false},
		{[]string{"x-gzip-not"}, false},
	}
	for _, c := range cases {
		h := http.Header{}
		for _, v := range c.header {
			h.Add("Accept-Encoding", v)
		}
		if got := acceptsGzip(h); got != c.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", c.header, got, c.want)
		}
	}
}

// TestStandInGzip checks the stand-in's non-streamed answer on the wire:
// gzip-compressed for a client that accepts it, plain for one that does
// not, and never for a streamed answer.
func TestStandInGzip(t *testing.T) {
	up, err := startUpstream(t.TempDir(), "", 3, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	// A transport that leaves Accept-Encoding and the body alone.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: up.CAs, ServerName: apiHost}, DisableCompression: true}
	defer tr.CloseIdleConnections()
	send := func(stream bool, accept string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "https://"+up.Addr+"/v1/chat/completions", bytes.NewReader(chatBody(stream)))
		req.Header.Set("Authorization", "Bearer "+realKey)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		return resp, b
	}
	resp, b := send(false, "gzip, deflate")
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || string(plain) != chatAnswer || len(b) >= len(chatAnswer) {
		t.Errorf("gzip answer: %d bytes on the wire, %d decoded, %v", len(b), len(plain), err)
	}
	resp, b = send(false, "")
	if resp.Header.Get("Content-Encoding") != "" || string(b) != chatAnswer {
		t.Errorf("without Accept-Encoding: %q, %d bytes", resp.Header.Get("Content-Encoding"), len(b))
	}
	resp, b = send(true, "gzip")
	if resp.Header.Get("Content-Encoding") != "" || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("stream: %q, %q", resp.Header.Get("Content-Encoding"), b)
	}
}
