package rules

import (
	"bytes"
	"testing"
)

// TestTerminalEvents checks the list of events that end an answer, and
// that each releases the text a masker holds back, masked.
func TestTerminalEvents(t *testing.T) {
	for _, typ := range []string{"response.completed", "response.failed", "response.incomplete", "error"} {
		if !IsTerminalEvent(typ) {
			t.Errorf("%s is not terminal", typ)
		}
	}
	for _, typ := range []string{"response.output_text.done", "response.created", "response.in_progress", "response.output_text.delta", ""} {
		if IsTerminalEvent(typ) {
			t.Errorf("%s is terminal", typ)
		}
	}
	s := mustSet(t, Rule{Name: "key", Pattern: `KEY-[0-9]+`, Action: Mask})
	for _, typ := range TerminalEvents() {
		t.Run(typ, func(t *testing.T) {
			m := s.NewEventMasker(StreamOptions{})
			out, err := m.Event([]byte(`{"type":"response.output_text.delta","item_id":"i1","output_index":0,"content_index":0,"delta":"a KEY-12"}`))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(bytes.Join(out, nil), []byte("KEY-12")) {
				t.Fatalf("a possible secret was not held back: %s", bytes.Join(out, nil))
			}
			out, err = m.Event([]byte(`{"type":"` + typ + `","response":{"id":"r1"}}`))
			if err != nil {
				t.Fatal(err)
			}
			all := bytes.Join(out, nil)
			if !bytes.Contains(all, []byte("[MASKED:key]")) {
				t.Fatalf("%s did not release the held-back text: %s", typ, all)
			}
		})
	}
}
