package clienthello

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzParse seeds")

// captureHello runs Go's TLS client against a net.Pipe and returns the
// ClientHello record it writes.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	cc, sc := net.Pipe()
	defer sc.Close()
	go func() {
		tls.Client(cc, cfg).Handshake()
		cc.Close()
	}()
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(sc, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(sc, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// refragment re-splits the handshake bytes carried by one record into
// records of the given sizes (the last record takes the rest).
func refragment(rec []byte, sizes ...int) []byte {
	hs := rec[recordHeaderLen:]
	var out []byte
	for i := 0; len(hs) > 0; i++ {
		n := len(hs)
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		out = append(out, recordTypeHandshake, rec[1], rec[2], byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

// writeChunks writes b to c in chunks of n bytes, as separate writes.
func writeChunks(c net.Conn, b []byte, n int) error {
	for len(b) > 0 {
		k := min(n, len(b))
		if _, err := c.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

func clientConfig(sni string, alpn ...string) *tls.Config {
	return &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: sni == ""}
}

func TestPeekGoClientHello(t *testing.T) {
	tests := []struct {
		name     string
		cfg      *tls.Config
		wantSNI  string
		wantALPN []string
		wantErr  error
	}{
		{"default (post-quantum key share)", clientConfig("api.openai.com"), "api.openai.com", nil, nil},
		{"ALPN", clientConfig("api.openai.com", "h2", "http/1.1"), "api.openai.com", []string{"h2", "http/1.1"}, nil},
		{"upper case SNI", clientConfig("API.OpenAI.com"), "api.openai.com", nil, nil},
		{"TLS 1.2 only", &tls.Config{ServerName: "x.example", MaxVersion: tls.VersionTLS12}, "x.example", nil, nil},
		{"no SNI", clientConfig("", "http/1.1"), "", []string{"http/1.1"}, ErrNoSNI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := captureHello(t, tt.cfg)
			info, err := Parse(hello)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse error = %v, want %v", err, tt.wantErr)
			}
			if info == nil {
				t.Fatal("no Info")
			}
			if info.ServerName != tt.wantSNI || fmt.Sprint(info.ALPN) != fmt.Sprint(tt.wantALPN) {
				t.Errorf("Parse = %q %q, want %q %q", info.ServerName, info.ALPN, tt.wantSNI, tt.wantALPN)
			}
		})
	}
}

func TestPostQuantumHelloIsLarge(t *testing.T) {
	// The reason for reading several segments: Go's default ClientHello
	// carries an X25519MLKEM768 key share of more than a kilobyte.
	hello := captureHello(t, clientConfig("api.openai.com"))
	if len(hello) < 1200 {
		t.Skipf("ClientHello is only %d bytes: no post-quantum key share in this Go", len(hello))
	}
	info, err := Parse(hello)
	if err != nil || info.ServerName != "api.openai.com" {
		t.Fatalf("Parse(%d bytes) = %+v, %v", len(hello), info, err)
	}
}

// TestPeekFragmented sends Go's ClientHello re-split into TLS records and
// TCP-like segments of various sizes, and checks that Peek finds the name
// and replays exactly the bytes it read.
func TestPeekFragmented(t *testing.T) {
	hello := captureHello(t, clientConfig("api.openai.com", "http/1.1"))
	tests := []struct {
		name    string
		wire    []byte
		segment int
	}{
		{"one record, one write", hello, len(hello)},
		{"one record, 1-byte writes", hello, 1},
		{"one record, 3-byte writes", hello, 3},
		{"header split from body", hello, recordHeaderLen},
		{"records of 1 byte then rest", refragment(hello, 1, 1, 1, 1), 1},
		{"handshake header split across records", refragment(hello, 2, 5), 7},
		{"records of 100 bytes", refragment(hello, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100), 64},
		{"two records, one write", refragment(hello, 700), 1 << 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			const after = "bytes after the hello"
			go writeChunks(cc, append(append([]byte{}, tt.wire...), after...), tt.segment)
			info, rc, err := Peek(sc, 10*time.Second)
			if err != nil {
				t.Fatalf("Peek: %v", err)
			}
			if info.ServerName != "api.openai.com" || fmt.Sprint(info.ALPN) != "[http/1.1]" {
				t.Errorf("Peek = %+v", info)
			}
			got := make([]byte, len(tt.wire)+len(after))
			if _, err := io.ReadFull(rc, got); err != nil {
				t.Fatalf("reading the replayed conn: %v", err)
			}
			if !bytes.Equal(got, append(append([]byte{}, tt.wire...), after...)) {
				t.Error("replayed bytes differ from the bytes sent")
			}
		})
	}
}

// TestPeekThenHandshake puts Peek between Go's TLS client and server, with
// a middlebox re-fragmenting the ClientHello, and checks that the
// handshake completes on the replayed connection.
func TestPeekThenHandshake(t *testing.T) {
	cert := selfSigned(t, "api.openai.com")
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	for _, sizes := range [][]int{nil, {1, 3, 200}} {
		t.Run(fmt.Sprint(sizes), func(t *testing.T) {
			cc, mid := net.Pipe()  // client ↔ middlebox
			mid2, sc := net.Pipe() // middlebox ↔ server
			defer cc.Close()
			defer sc.Close()
			go func() {
				defer mid.Close()
				defer mid2.Close()
				hdr := make([]byte, recordHeaderLen)
				if _, err := io.ReadFull(mid, hdr); err != nil {
					return
				}
				body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
				if _, err := io.ReadFull(mid, body); err != nil {
					return
				}
				if writeChunks(mid2, refragment(append(hdr, body...), sizes...), 5) != nil {
					return
				}
				go io.Copy(mid, mid2)
				io.Copy(mid2, mid)
			}()
			errc := make(chan error, 1)
			go func() {
				c := tls.Client(cc, &tls.Config{ServerName: "api.openai.com", RootCAs: pool})
				if err := c.Handshake(); err != nil {
					errc <- err
					return
				}
				_, err := c.Write([]byte("ping"))
				errc <- err
			}()
			info, rc, err := Peek(sc, 10*time.Second)
			if err != nil || info.ServerName != "api.openai.com" {
				t.Fatalf("Peek = %+v, %v", info, err)
			}
			srv := tls.Server(rc, &tls.Config{Certificates: []tls.Certificate{cert}})
			buf := make([]byte, 4)
			if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("server read %q, %v", buf, err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("client: %v", err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	hello := captureHello(t, clientConfig("api.openai.com"))
	ccs := []byte{20, 3, 3, 0, 1, 1}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"), ErrNotTLS},
		{"SSH", []byte("SSH-2.0-OpenSSH_9.6\r\n"), ErrNotTLS},
		{"SSLv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, ErrNotTLS},
		{"handshake byte then garbage version", []byte{22, 'x', 'y', 0, 1, 1}, ErrNotTLS},
		{"garbage", []byte{22, 3, 1, 0xff, 0xff, 1, 2, 3}, ErrMalformed},
		{"zero-length record", []byte{22, 3, 1, 0, 0}, ErrMalformed},
		{"record header only", hello[:recordHeaderLen], ErrTruncated},
		{"last byte missing", hello[:len(hello)-1], ErrTruncated},
		{"other record type mid-hello", append(refragment(hello, 10)[:15], ccs...), ErrMalformed},
		{"ServerHello, not ClientHello", withHandshakeType(hello, 2), ErrMalformed},
		{"message larger than MaxLen", []byte{22, 3, 1, 0, 4, 1, 0x01, 0, 0}, ErrTooLarge},
		{"no extensions", build(nil), ErrNoSNI},
		{"no SNI, ALPN only", build(func(b *cryptobyte.Builder) { alpnExt(b, "h2") }), ErrNoSNI},
		{"SNI of another name type only", build(func(b *cryptobyte.Builder) { sniExt(b, 1, "x.example") }), ErrNoSNI},
		{"SNI with a trailing dot", build(func(b *cryptobyte.Builder) { sniExt(b, 0, "api.openai.com.") }), ErrMalformed},
		{"SNI with a space", build(func(b *cryptobyte.Builder) { sniExt(b, 0, "api openai.com") }), ErrMalformed},
		{"SNI with NUL", build(func(b *cryptobyte.Builder) { sniExt(b, 0, "api.openai.com\x00.evil") }), ErrMalformed},
		{"SNI empty label", build(func(b *cryptobyte.Builder) { sniExt(b, 0, "api..com") }), ErrMalformed},
		{"two host names", build(func(b *cryptobyte.Builder) { sniExt(b, 0, "a.example", "b.example") }), ErrMalformed},
		{"duplicate SNI extension", build(func(b *cryptobyte.Builder) { sniExt(b, 0, "a.example"); sniExt(b, 0, "b.example") }), ErrMalformed},
		{"empty ALPN protocol", build(func(b *cryptobyte.Builder) { sniExt(b, 0, "a.example"); alpnExt(b, "") }), ErrMalformed},
		{"bytes after the ClientHello in its record", appendToRecord(hello, 0), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %+v, %v; want %v", info, err, tt.want)
			}
		})
	}
	// A hand-built ClientHello parses when it is well-formed.
	info, err := Parse(build(func(b *cryptobyte.Builder) { sniExt(b, 0, "Api.OpenAI.com"); alpnExt(b, "h2", "http/1.1") }))
	if err != nil || info.ServerName != "api.openai.com" || fmt.Sprint(info.ALPN) != "[h2 http/1.1]" {
		t.Fatalf("Parse(built) = %+v, %v", info, err)
	}
}

func TestPeekErrors(t *testing.T) {
	hello := captureHello(t, clientConfig("api.openai.com"))
	t.Run("deadline", func(t *testing.T) {
		cc, sc := net.Pipe()
		defer cc.Close()
		defer sc.Close()
		go cc.Write(hello[:len(hello)/2]) // and then nothing
		_, rc, err := Peek(sc, 50*time.Millisecond)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Peek error = %v, want a deadline error", err)
		}
		if rc == nil {
			t.Fatal("no conn returned")
		}
	})
	t.Run("client closes mid-hello", func(t *testing.T) {
		cc, sc := net.Pipe()
		defer sc.Close()
		go func() { cc.Write(hello[:len(hello)/2]); cc.Close() }()
		if _, _, err := Peek(sc, 10*time.Second); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Peek error = %v, want ErrTruncated", err)
		}
	})
	t.Run("endless records", func(t *testing.T) {
		// A handshake message that claims 16 KiB minus one byte, sent in
		// 1-byte records, outgrows the buffer before it completes.
		cc, sc := net.Pipe()
		defer cc.Close()
		defer sc.Close()
		go func() {
			n := MaxLen - 5
			ones := make([]int, MaxLen)
			for i := range ones {
				ones[i] = 1
			}
			wire := refragment(append([]byte{22, 3, 1, 0, 4, 1, 0, byte(n >> 8), byte(n)}, make([]byte, n)...), ones...)
			cc.Write(wire)
		}()
		if _, _, err := Peek(sc, 10*time.Second); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Peek error = %v, want ErrTooLarge", err)
		}
	})
	t.Run("plain HTTP is replayed", func(t *testing.T) {
		cc, sc := net.Pipe()
		defer cc.Close()
		defer sc.Close()
		go io.WriteString(cc, "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n")
		_, rc, err := Peek(sc, 10*time.Second)
		if !errors.Is(err, ErrNotTLS) {
			t.Fatalf("Peek error = %v, want ErrNotTLS", err)
		}
		req, err := http.ReadRequest(bufio.NewReader(rc))
		if err != nil || req.Host != "api.openai.com" || req.URL.Path != "/v1/models" {
			t.Fatalf("ReadRequest on replayed conn = %v, %v", req, err)
		}
	})
}

// build returns a ClientHello record with the extensions exts adds (nil:
// no extensions block at all).
func build(exts func(*cryptobyte.Builder)) []byte {
	var body cryptobyte.Builder
	body.AddUint16(0x0303)
	body.AddBytes(make([]byte, 32))
	body.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})
	body.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301) })
	body.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
	if exts != nil {
		body.AddUint16LengthPrefixed(exts)
	}
	var hs cryptobyte.Builder
	hs.AddUint8(typeClientHello)
	hs.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body.BytesOrPanic()) })
	var rec cryptobyte.Builder
	rec.AddUint8(recordTypeHandshake)
	rec.AddUint16(0x0301)
	rec.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(hs.BytesOrPanic()) })
	return rec.BytesOrPanic()
}

func sniExt(b *cryptobyte.Builder, typ uint8, names ...string) {
	b.AddUint16(extServerName)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, n := range names {
				b.AddUint8(typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
			}
		})
	})
}

func alpnExt(b *cryptobyte.Builder, protos ...string) {
	b.AddUint16(extALPN)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, p := range protos {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
			}
		})
	})
}

func withHandshakeType(rec []byte, typ byte) []byte {
	out := append([]byte{}, rec...)
	out[recordHeaderLen] = typ
	return out
}

// appendToRecord adds bytes to the record's payload, after the handshake
// message.
func appendToRecord(rec []byte, extra ...byte) []byte {
	out := append(append([]byte{}, rec...), extra...)
	n := len(out) - recordHeaderLen
	out[3], out[4] = byte(n>>8), byte(n)
	return out
}

func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestFuzzSeeds writes the FuzzParse seed corpus when run with
// -update-seeds, and otherwise checks that it is there.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if !*updateSeeds {
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) == 0 {
			t.Fatalf("no seed corpus in %s (run go test -run TestFuzzSeeds -update-seeds): %v", dir, err)
		}
		return
	}
	hello := captureHello(t, clientConfig("api.openai.com", "h2", "http/1.1"))
	seeds := map[string][]byte{
		"go-client-pq":        hello,
		"go-client-tls12":     captureHello(t, &tls.Config{ServerName: "api.openai.com", MaxVersion: tls.VersionTLS12}),
		"go-client-no-sni":    captureHello(t, clientConfig("")),
		"fragmented-records":  refragment(hello, 1, 3, 4, 100, 500),
		"built-sni-alpn":      build(func(b *cryptobyte.Builder) { sniExt(b, 0, "a.example"); alpnExt(b, "h2") }),
		"built-no-extensions": build(nil),
		"truncated":           hello[:len(hello)/2],
		"http":                []byte("GET / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"),
		"garbage":             []byte{22, 3, 1, 0xff, 0xff, 1, 2, 3},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParse checks that Parse never panics, that any name it returns is a
// clean host name, and that it agrees with crypto/tls's own ClientHello
// parser whenever both read a name.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Parse(b)
		if err != nil && !errors.Is(err, ErrNoSNI) {
			for _, known := range []error{ErrNotTLS, ErrTruncated, ErrMalformed, ErrTooLarge} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Parse returned an unclassified error: %v", err)
		}
		if info == nil {
			t.Fatal("nil Info without error")
		}
		if err == nil {
			if checkHostName([]byte(info.ServerName)) != nil || info.ServerName != strings.ToLower(info.ServerName) {
				t.Fatalf("Parse returned an unclean name %q", info.ServerName)
			}
		}
		goInfo := goParse(b)
		if goInfo == nil {
			return
		}
		if !strings.EqualFold(goInfo.ServerName, info.ServerName) {
			t.Fatalf("SNI: Parse %q, crypto/tls %q", info.ServerName, goInfo.ServerName)
		}
		if fmt.Sprint(goInfo.SupportedProtos) != fmt.Sprint(info.ALPN) {
			t.Fatalf("ALPN: Parse %q, crypto/tls %q", info.ALPN, goInfo.SupportedProtos)
		}
	})
}

// goParse feeds b to a crypto/tls server and returns the ClientHelloInfo
// it parsed, or nil if it did not get that far.
func goParse(b []byte) *tls.ClientHelloInfo {
	cc, sc := net.Pipe()
	defer sc.Close()
	go func() {
		cc.Write(b)
		cc.Close()
	}()
	sc.SetWriteDeadline(time.Now().Add(-time.Second)) // drop alerts
	var got *tls.ClientHelloInfo
	errStop := errors.New("stop")
	tls.Server(sc, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		got = h
		return nil, errStop
	}}).Handshake()
	return got
}

// TestGoParseOracle checks that FuzzParse's oracle sees real ClientHellos,
// fragmented ones included, so that the comparison is not vacuous.
func TestGoParseOracle(t *testing.T) {
	hello := captureHello(t, clientConfig("api.openai.com", "h2"))
	for _, wire := range [][]byte{hello, refragment(hello, 1, 3, 100)} {
		got := goParse(wire)
		if got == nil || got.ServerName != "api.openai.com" {
			t.Fatalf("crypto/tls did not parse the ClientHello: %+v", got)
		}
	}
}
