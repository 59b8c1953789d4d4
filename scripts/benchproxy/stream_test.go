package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadStream(t *testing.T) {
	ev := func(content string) string {
		return `data: {"choices":[{"index":0,"delta":{"content":` + quote(content) + `}}]}` + "\n\n"
	}
	want := []string{" The", " build", " failed"}
	cases := []struct {
		name    string
		stream  string
		events  int
		split   int
		whole   []int // clock (ms) when each delta is complete
		wantErr string
	}{
		{
			name:   "one event per delta",
			stream: ev(" The") + ev(" build") + ev(" failed") + "data: [DONE]\n\n",
			events: 3, whole: []int{1, 2, 3},
		},
		{
			name: "tails held back to the next event, remainder before [DONE]",
			stream: `data: {"choices":[{"delta":{"role":"assistant","content":" Th"}}]}` + "\n\n" +
				ev("e buil") + ev("d fail") + ev("ed") + "data: [DONE]\n\n",
			events: 4, split: 3, whole: []int{2, 3, 4},
		},
		{
			name:   "role-only event, comments, CRLF and multi-line data",
			stream: `data: {"choices":[{"delta":{"role":"assistant"}}]}` + "\r\n\r\n: keep-alive\n\ndata: {\"choices\":\ndata: [{\"delta\":{\"content\":\" The build\"}}]}\n\n" + ev(" failed") + "data: [DONE]\n\n",
			events: 2, split: 0, whole: []int{2, 2, 3},
		},
		{
			name:    "no [DONE]",
			stream:  ev(" The") + ev(" build"),
			wantErr: "before [DONE]",
		},
		{
			name:    "text changed",
			stream:  ev(" The") + ev(" b****") + ev(" failed") + "data: [DONE]\n\n",
			wantErr: "text differs",
		},
		{
			name:    "a delta missing",
			stream:  ev(" The") + ev(" build") + "data: [DONE]\n\n",
			wantErr: "got 2 of 3",
		},
		{
			name:    "not JSON",
			stream:  "data: hello\n\n",
			wantErr: "event 0",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The clock ticks 1 ms at each event dispatched (with or
			// without text).
			n := 0
			st, err := readStream(strings.NewReader(c.stream), want, func() time.Duration {
				n++
				return time.Duration(n) * time.Millisecond
			})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Events != c.events || st.Split != c.split {
				t.Errorf("events %d split %d, want %d and %d", st.Events, st.Split, c.events, c.split)
			}
			var got []int
			for _, d := range st.Whole {
				got = append(got, int(d/time.Millisecond))
			}
			if len(st.EventGaps) != st.Events-1 {
				t.Errorf("%d event gaps for %d events", len(st.EventGaps), st.Events)
			}
			if !slices.Equal(got, c.whole) || st.First > st.Whole[0] {
				t.Errorf("first %v, deltas complete at %v ms, want %v", st.First, got, c.whole)
			}
		})
	}
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

func FuzzReadStream(f *testing.F) {
	f.Add("data: {\"choices\":[{\"delta\":{\"content\":\" The\"}}]}\n\ndata: [DONE]\n\n")
	f.Add("data: [DONE]\n\n")
	f.Add("data:\n\n:\n\ndata: {}\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		want := deltaTexts(2)
		st, err := readStream(strings.NewReader(s), want, func() time.Duration { return time.Millisecond })
		if err == nil && (len(st.Whole) != 2 || st.Split > 2 || st.Events < 1) {
			t.Errorf("accepted %q: %+v", s, st)
		}
	})
}
