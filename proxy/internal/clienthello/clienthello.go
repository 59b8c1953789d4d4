// Package clienthello reads a TLS ClientHello from a connection without
// consuming it: the transparent listener learns the server name (SNI) and
// the offered protocols (ALPN), then hands a connection that replays the
// peeked bytes to the TLS server or to a byte-for-byte splice.
//
// A ClientHello may span several TCP segments and several TLS records
// (post-quantum key shares alone make it larger than one Ethernet frame),
// so Peek reads record by record until the handshake message is complete,
// never more than MaxLen bytes, and within a deadline.
package clienthello

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// MaxLen bounds the bytes Peek reads before giving up (ErrTooLarge). Real
// ClientHellos, post-quantum key shares included, stay well under it.
const MaxLen = 16 << 10

// Errors of Peek and Parse; test for them with errors.Is. A read deadline
// that expires is reported as an error wrapping os.ErrDeadlineExceeded.
var (
	// ErrNotTLS means the first bytes are not a TLS handshake record
	// (plain HTTP, for example).
	ErrNotTLS = errors.New("clienthello: not a TLS handshake")
	// ErrNoSNI means a well-formed ClientHello names no server.
	ErrNoSNI = errors.New("clienthello: no server name (SNI)")
	// ErrTruncated means the bytes end before the ClientHello does.
	ErrTruncated = errors.New("clienthello: truncated ClientHello")
	// ErrMalformed means the bytes are TLS records but not a valid
	// ClientHello.
	ErrMalformed = errors.New("clienthello: malformed ClientHello")
	// ErrTooLarge means the ClientHello would exceed MaxLen bytes.
	ErrTooLarge = errors.New("clienthello: ClientHello larger than the peek buffer")
)

// Info is what a ClientHello says about where the client is going.
type Info struct {
	// ServerName is the SNI host name, lower-cased.
	ServerName string
	// ALPN lists the application protocols the client offers, in order.
	ALPN []string
}

// TLS record and handshake constants (RFC 8446).
const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	maxPlaintext        = 1 << 14
	typeClientHello     = 1
	extServerName       = 0
	extALPN             = 16
	sniHostName         = 0
	maxHostNameLen      = 253
)

// Peek reads the ClientHello from c, waiting at most timeout for it (no
// limit if timeout <= 0), and returns what it says with a connection that
// replays every byte read before reading on from c. The returned
// connection is never nil, even with an error: a caller may still read the
// peeked bytes (to parse a plain-HTTP request) or write an alert to it.
// Peek clears c's read deadline before returning.
func Peek(c net.Conn, timeout time.Duration) (*Info, net.Conn, error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return nil, c, fmt.Errorf("clienthello: set deadline: %w", err)
		}
	}
	r := &reader{src: c}
	info, err := r.clientHello()
	if timeout > 0 {
		if derr := c.SetReadDeadline(time.Time{}); derr != nil && err == nil {
			err = fmt.Errorf("clienthello: clear deadline: %w", derr)
		}
	}
	return info, newReplayConn(c, r.buf), err
}

// Parse parses a ClientHello from b, the first bytes a client sent: one or
// more TLS records. Bytes after the ClientHello's last record are ignored.
// It returns ErrTruncated if b ends before the ClientHello does.
func Parse(b []byte) (*Info, error) {
	r := &reader{buf: b}
	return r.clientHello()
}

// reader accumulates a client's first bytes, reading more from src only
// when the parser needs them.
type reader struct {
	src io.Reader // nil: buf is all there is
	buf []byte
}

// fill makes buf at least n bytes long.
func (r *reader) fill(n int) error {
	if n > MaxLen {
		return ErrTooLarge
	}
	for len(r.buf) < n {
		if r.src == nil {
			return ErrTruncated
		}
		if cap(r.buf) < n {
			// Grow geometrically, within MaxLen.
			nb := make([]byte, len(r.buf), min(max(2*cap(r.buf), n, 1024), MaxLen))
			copy(nb, r.buf)
			r.buf = nb
		}
		m, err := r.src.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+m]
		if len(r.buf) >= n {
			return nil
		}
		switch {
		case errors.Is(err, io.EOF):
			return ErrTruncated
		case err != nil:
			return fmt.Errorf("clienthello: read: %w", err)
		}
	}
	return nil
}

// clientHello reads records until the handshake message they carry is
// complete, then parses it.
func (r *reader) clientHello() (*Info, error) {
	// Decide on the first byte, so that a client that sends a short
	// non-TLS line and waits is answered at once.
	if err := r.fill(1); err != nil {
		return nil, err
	}
	if r.buf[0] != recordTypeHandshake {
		return nil, ErrNotTLS
	}
	var hs []byte // handshake bytes carried so far
	for off := 0; ; {
		if err := r.fill(off + recordHeaderLen); err != nil {
			return nil, err
		}
		h := r.buf[off : off+recordHeaderLen]
		switch {
		case off == 0 && h[1] != 3:
			return nil, ErrNotTLS
		case h[0] != recordTypeHandshake:
			return nil, fmt.Errorf("%w: record type %d before the ClientHello ends", ErrMalformed, h[0])
		case h[1] != 3:
			return nil, fmt.Errorf("%w: record version %d.%d", ErrMalformed, h[1], h[2])
		}
		n := int(h[3])<<8 | int(h[4])
		if n == 0 || n > maxPlaintext {
			return nil, fmt.Errorf("%w: record length %d", ErrMalformed, n)
		}
		end := off + recordHeaderLen + n
		if err := r.fill(end); err != nil {
			return nil, err
		}
		hs = append(hs, r.buf[off+recordHeaderLen:end]...)
		off = end
		if len(hs) < 4 {
			continue
		}
		if hs[0] != typeClientHello {
			return nil, fmt.Errorf("%w: handshake message type %d", ErrMalformed, hs[0])
		}
		mlen := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if mlen+4 > MaxLen {
			return nil, ErrTooLarge
		}
		switch {
		case len(hs) < 4+mlen:
			continue
		case len(hs) > 4+mlen:
			// A client sends nothing after its ClientHello until the
			// server answers.
			return nil, fmt.Errorf("%w: %d bytes after the ClientHello", ErrMalformed, len(hs)-4-mlen)
		}
		return parseHello(hs[4:])
	}
}

// parseHello parses a ClientHello body (RFC 8446 section 4.1.2), as
// crypto/tls does: duplicate extensions, empty lists and trailing bytes are
// errors.
func parseHello(b []byte) (*Info, error) {
	s := cryptobyte.String(b)
	var (
		version                            uint16
		random, sessionID, suites, methods []byte
		exts                               cryptobyte.String
	)
	if !s.ReadUint16(&version) || !s.ReadBytes(&random, 32) ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&sessionID)) || len(sessionID) > 32 ||
		!s.ReadUint16LengthPrefixed((*cryptobyte.String)(&suites)) || len(suites) < 2 || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&methods)) || len(methods) < 1 {
		return nil, fmt.Errorf("%w: bad ClientHello fields", ErrMalformed)
	}
	if version < 0x0300 || version > 0x03ff {
		return nil, fmt.Errorf("%w: ClientHello version %#04x", ErrMalformed, version)
	}
	info := &Info{}
	if s.Empty() {
		// TLS 1.2 allows a ClientHello without extensions.
		return info, ErrNoSNI
	}
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return nil, fmt.Errorf("%w: bad extensions block", ErrMalformed)
	}
	seen := map[uint16]bool{}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, fmt.Errorf("%w: bad extension", ErrMalformed)
		}
		if seen[typ] {
			return nil, fmt.Errorf("%w: duplicate extension %d", ErrMalformed, typ)
		}
		seen[typ] = true
		var err error
		switch typ {
		case extServerName:
			info.ServerName, err = parseSNI(data)
		case extALPN:
			info.ALPN, err = parseALPN(data)
		}
		if err != nil {
			return nil, err
		}
	}
	if info.ServerName == "" {
		return info, ErrNoSNI
	}
	return info, nil
}

// parseSNI parses a server_name extension (RFC 6066 section 3) and returns
// its host name.
func parseSNI(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return "", fmt.Errorf("%w: bad server_name extension", ErrMalformed)
	}
	name := ""
	for !list.Empty() {
		var typ uint8
		var n cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&n) {
			return "", fmt.Errorf("%w: bad server_name entry", ErrMalformed)
		}
		if typ != sniHostName {
			continue
		}
		if name != "" {
			return "", fmt.Errorf("%w: several host names in server_name", ErrMalformed)
		}
		if err := checkHostName(n); err != nil {
			return "", err
		}
		name = strings.ToLower(string(n))
	}
	return name, nil
}

// checkHostName accepts what may be a DNS name (letters, digits, '-', '_'
// and dots between non-empty labels), so that the name is safe to use in
// policy, logs and records. RFC 6066 forbids a trailing dot.
func checkHostName(n []byte) error {
	if len(n) == 0 || len(n) > maxHostNameLen {
		return fmt.Errorf("%w: server name of %d bytes", ErrMalformed, len(n))
	}
	label := 0
	for _, c := range n {
		switch {
		case c == '.':
			if label == 0 {
				return fmt.Errorf("%w: empty label in server name", ErrMalformed)
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%w: byte %#02x in server name", ErrMalformed, c)
		}
		label++
		if label > 63 {
			return fmt.Errorf("%w: server name label longer than 63 bytes", ErrMalformed)
		}
	}
	if label == 0 {
		return fmt.Errorf("%w: server name ends with a dot", ErrMalformed)
	}
	return nil
}

// parseALPN parses an application_layer_protocol_negotiation extension
// (RFC 7301 section 3.1).
func parseALPN(data cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return nil, fmt.Errorf("%w: bad ALPN extension", ErrMalformed)
	}
	var protos []string
	for !list.Empty() {
		var p cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&p) || p.Empty() {
			return nil, fmt.Errorf("%w: bad ALPN protocol", ErrMalformed)
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}
