package main

import (
	"context"
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestBareGoproxy sends the benchmark's traffic through the bare goproxy
// (in this process) to the real stand-in: the dummy credential is
// swapped for the key (the stand-in refuses it otherwise), the gzip
// answer passes through compressed, streams arrive whole, and CONNECT to
// any other host is refused.
func TestBareGoproxy(t *testing.T) {
	up, err := startUpstream(t.TempDir(), "", 3, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	b, err := startBareGoproxy("127.0.0.1:0", bareOptions{UpstreamAddr: up.Addr, UpstreamCA: up.CAFile, Key: realKey})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b.CAPEM) {
		t.Fatal("no CA PEM")
	}
	p := &path{Name: "bare-goproxy", Base: "https://" + apiHost, Credential: dummyCredential,
		Client: newClient(&url.URL{Scheme: "http", Host: b.Addr}, roots, nil)}
	defer p.Client.CloseIdleConnections()
	ctx := context.Background()

	if s := p.do(ctx, chatBody(false), false, nil); s.err != nil || !s.gzip {
		t.Fatalf("chat through the bare goproxy: err %v, gzip %v", s.err, s.gzip)
	}
	if s := p.do(ctx, chatBody(true), true, deltaTexts(3)); s.err != nil || s.events != 3 || s.split != 0 {
		t.Fatalf("stream through the bare goproxy: %+v", s)
	}
	// Without the proxy, the dummy credential is refused: the swap is
	// what let it through.
	direct := directPath(up)
	direct.Credential = dummyCredential
	if s := direct.do(ctx, chatBody(false), false, nil); s.err == nil || !strings.Contains(s.err.Error(), "401") {
		t.Errorf("dummy credential straight to the stand-in: %v, want 401", s.err)
	}
	other := &path{Name: "other", Base: "https://other.example", Credential: dummyCredential, Client: p.Client}
	if s := other.do(ctx, chatBody(false), false, nil); s.err == nil {
		t.Errorf("CONNECT to other.example was not refused")
	}
}
