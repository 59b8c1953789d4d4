package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// LeafPrefix starts every version 1 leaf. The leaf bytes are LeafPrefix
// followed by the JSON encoding of the [Record].
const LeafPrefix = "sessctl/leaf/v1\n"

// maxLeafSize bounds a leaf so a corrupt or hostile file cannot make the
// decoder allocate without limit.
const maxLeafSize = 16 << 20

// EncodeLeaf returns the leaf bytes for r: LeafPrefix followed by the JSON
// encoding of r. The bodies (RequestBody, ResponseBody) are not part of the
// leaf; only their commitments are.
func EncodeLeaf(r *Record) ([]byte, error) {
	if r.Origin != "" {
		return nil, fmt.Errorf("store: encode leaf: a record read from a central copy (origin %q) cannot be appended", r.Origin)
	}
	var buf bytes.Buffer
	buf.WriteString(LeafPrefix)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("store: encode leaf: %w", err)
	}
	// Encoder.Encode appends a newline; keep the leaf free of it so the
	// format is "prefix ‖ JSON object", nothing after.
	b := buf.Bytes()
	b = b[:len(b)-1]
	if len(b) > maxLeafSize {
		return nil, fmt.Errorf("store: encode leaf: %d bytes exceeds the %d byte limit", len(b), maxLeafSize)
	}
	return b, nil
}

// DecodeLeaf parses leaf bytes produced by [EncodeLeaf]. It checks the
// format tag, and that the rest is exactly one JSON object with no
// trailing data. It never panics on malformed input.
func DecodeLeaf(leaf []byte) (*Record, error) {
	body, err := leafBody(leaf)
	if err != nil {
		return nil, err
	}
	r := new(Record)
	if err := decodeStrict(body, r); err != nil {
		return nil, fmt.Errorf("store: decode leaf: %w", err)
	}
	return r, nil
}

// leafHeader is the part of a leaf that Verify needs.
type leafHeader struct {
	Seq      uint64            `json:"seq"`
	Prev     string            `json:"prev"`
	Kind     Kind              `json:"kind"`
	Request  *Commitment       `json:"request"`
	Response *Commitment       `json:"response"`
	Extra    map[string]string `json:"extra"`
}

func decodeLeafHeader(leaf []byte) (*leafHeader, error) {
	body, err := leafBody(leaf)
	if err != nil {
		return nil, err
	}
	h := new(leafHeader)
	if err := json.Unmarshal(body, h); err != nil {
		return nil, fmt.Errorf("store: decode leaf: %w", err)
	}
	return h, nil
}

func leafBody(leaf []byte) ([]byte, error) {
	if len(leaf) > maxLeafSize {
		return nil, fmt.Errorf("store: decode leaf: %d bytes exceeds the %d byte limit", len(leaf), maxLeafSize)
	}
	if !bytes.HasPrefix(leaf, []byte(LeafPrefix)) {
		return nil, errors.New("store: decode leaf: missing " + fmt.Sprintf("%q", LeafPrefix) + " format tag")
	}
	body := leaf[len(LeafPrefix):]
	if len(body) == 0 || body[0] != '{' {
		return nil, errors.New("store: decode leaf: not a JSON object")
	}
	return body, nil
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() || dec.InputOffset() != int64(len(body)) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
