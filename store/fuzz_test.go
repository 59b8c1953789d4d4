package store

import (
	"fmt"
	"testing"
	"time"
)

func FuzzDecodeLeaf(f *testing.F) {
	for i, r := range []*Record{exchange(1), {Kind: KindGenesis, Extra: map[string]string{"origin": "h/x"}}, {Kind: KindRefused}} {
		j, err := newJob(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(leafFrom(j.pre, uint64(i), "00"))
	}
	f.Add([]byte(LeafPrefix + `{"seq":1}`))
	f.Add([]byte(LeafPrefix + `{"seq":1} `))
	f.Add([]byte(LeafPrefix + `{"seq":-1}`))
	f.Add([]byte(LeafPrefix + `{"unknown":1}`))
	f.Add([]byte("sessctl/leaf/v2\n{}"))
	f.Fuzz(func(t *testing.T, leaf []byte) {
		r, err := DecodeLeaf(leaf)
		h, herr := decodeLeafHeader(leaf)
		if err != nil {
			return
		}
		// Whatever the strict decoder accepts, the header decoder reads
		// the same way.
		if herr != nil {
			t.Fatalf("DecodeLeaf ok but header decode failed: %v", herr)
		}
		if h.Seq != r.Seq || h.Prev != r.Prev || h.Kind != r.Kind {
			t.Fatalf("header %+v vs record %+v", h, r)
		}
		// A decoded record re-encodes to a leaf that decodes to the same.
		again, err := EncodeLeaf(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := DecodeLeaf(again)
		if err != nil || r2.Seq != r.Seq || r2.Prev != r.Prev {
			t.Fatalf("re-encoded leaf: %v", err)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add("host/0190c3a0\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	f.Add("o\n-1\nx\n")
	f.Add("o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		c2, err := ParseCheckpoint(c.String())
		if err != nil || c2 != c {
			t.Fatalf("round trip %+v -> %q -> %+v, %v", c, c.String(), c2, err)
		}
	})
}

func FuzzVerifyProof(f *testing.F) {
	f.Add([]byte(proofHeader+"\nkey k\nindex 0\nleaf AA==\nhash AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ncheckpoint\no\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAA\n"), "")
	f.Fuzz(func(t *testing.T, bundle []byte, key string) {
		VerifyProof(bundle, key) // must not panic
		SplitNotes(bundle)
	})
}

// The fast header reader agrees with the JSON decoder on every leaf the
// encoder can produce.
func FuzzFastHeader(f *testing.F) {
	for _, r := range []*Record{exchange(1), {Kind: KindRefused, Reason: `x","request":{"sha256":"`}, {Kind: "k\"q", Meta: map[string]string{"request": "{"}}} {
		j, err := newJob(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(leafFrom(j.pre, 3, "00"))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeLeaf(in)
		if err != nil {
			return
		}
		leaf, err := EncodeLeaf(r)
		if err != nil {
			return
		}
		slow, err := decodeLeafHeader(leaf)
		if err != nil {
			t.Fatalf("encoded leaf does not decode: %v", err)
		}
		fast, ok := fastHeader(leaf)
		if !ok {
			return
		}
		if fast.Seq != slow.Seq || fast.Prev != slow.Prev || fast.Kind != slow.Kind ||
			fmt.Sprint(fast.Request) != fmt.Sprint(slow.Request) || fmt.Sprint(fast.Response) != fmt.Sprint(slow.Response) {
			t.Fatalf("fast %+v %v %v\nslow %+v %v %v\nleaf %s", fast, fast.Request, fast.Response, slow, slow.Request, slow.Response, leaf)
		}
	})
}

// FuzzNeedles checks that a record's leaf contains the needles of a filter
// on its own values, which List relies on to skip leaves undecoded.
func FuzzNeedles(f *testing.F) {
	f.Add("acme/api", "0123456789abcdef", 7)
	f.Add("<b>&\"\\\x00\u2028", "ü\u00e9x", 2)
	f.Add("\xff\xfe", "abc\xc3", 3)
	f.Fuzz(func(t *testing.T, v, sha string, cut int) {
		r := &Record{Kind: Kind(v), SessionID: v, Start: time.Unix(1, 0), Host: v, Outcome: Outcome(v),
			Identity: Identity{Runner: v, Claims: map[string]string{"project_path": v, "pipeline_id": v, "user_login": v, "sha": sha}},
			Rules:    []RuleHit{{Name: v}}}
		leaf, err := EncodeLeaf(r)
		if err != nil {
			t.Skip()
		}
		dec, err := DecodeLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		want := sha
		if cut = max(cut, 0); cut < len(sha) && cut >= minSHAAbbrev {
			want = sha[:cut]
		}
		flt := Filter{Runner: v, Repo: v, Run: v, Actor: v, Outcome: Outcome(v), Host: v, Kind: Kind(v), Rule: v, Session: v, SHA: want}
		// Where the decoded record matches, the leaf has every needle.
		if flt.Match(dec) && !containsAll(leaf, flt.needles()) {
			t.Fatalf("leaf %q lacks a needle of %q", leaf, flt.needles())
		}
	})
}
