package ca

import (
	"crypto/tls"
	"testing"
	"time"
)

// BenchmarkMint is the cost of a cache miss: a new key and a signature.
func BenchmarkMint(b *testing.B) {
	_, a := newTestCA(b, InitOptions{}, LoadOptions{})
	iss := a.state.Load()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := iss.mint("api.openai.com", time.Now(), DefaultLeafValidity); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetCertificateCached is the cost of a handshake's certificate
// lookup once the leaf is cached.
func BenchmarkGetCertificateCached(b *testing.B) {
	_, a := newTestCA(b, InitOptions{}, LoadOptions{})
	hello := &tls.ClientHelloInfo{ServerName: "api.openai.com"}
	if _, err := a.GetCertificate(hello); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.GetCertificate(hello); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetCertificateCachedParallel measures contention on the cache.
func BenchmarkGetCertificateCachedParallel(b *testing.B) {
	_, a := newTestCA(b, InitOptions{}, LoadOptions{})
	hello := &tls.ClientHelloInfo{ServerName: "api.openai.com"}
	if _, err := a.GetCertificate(hello); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.GetCertificate(hello); err != nil {
				b.Fatal(err)
			}
		}
	})
}
