package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sessctl/sessctl/rules"
)

// holdbackReport feeds the streamed answer of the benchmark (deltas
// deltas) through sessctl's SSE masker with the built-in rules, all
// together and each rule alone, and writes which deltas leave the masker
// split: part of their text held back until the next event, which the
// client then receives one delta interval late.
func holdbackReport(w io.Writer, deltas int) {
	want := deltaTexts(deltas)
	all, out := splitDeltas(rules.Default(), want)
	fmt.Fprintf(w, "built-in rules: %d of %d deltas split; the text of each event sent on:\n  %q\n", len(all), len(want), out)
	for _, r := range rules.Default().Rules() {
		if s, _ := splitDeltas(rules.Default().Subset([]string{r.Name}), want); len(s) > 0 {
			fmt.Fprintf(w, "%s alone: %d split: %s\n", r.Name, len(s), strings.Join(s, " "))
		}
	}
}

// splitDeltas returns the deltas whose text did not leave the masker
// whole with their own event, and the text of each event that did leave.
func splitDeltas(set *rules.Set, want []string) (split, out []string) {
	var buf bytes.Buffer
	m := set.NewSSE(&buf, nil, rules.StreamOptions{})
	for i, text := range want {
		buf.Reset()
		m.Write([]byte(chunk(i)))
		var got strings.Builder
		for _, ev := range strings.Split(buf.String(), "\n\n") {
			data, ok := strings.CutPrefix(ev, "data: ")
			if !ok {
				continue
			}
			var v struct {
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if json.Unmarshal([]byte(data), &v) == nil && len(v.Choices) > 0 {
				got.WriteString(v.Choices[0].Delta.Content)
			}
		}
		out = append(out, got.String())
		if !strings.HasSuffix(got.String(), text) {
			split = append(split, strconv.Quote(text))
		}
	}
	return split, out
}
