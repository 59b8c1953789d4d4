package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// streamTimes is what a client saw of one streamed answer.
type streamTimes struct {
	// First is when the first event carrying text arrived: the first
	// token a user sees.
	First time.Duration
	// Whole is, for each delta the upstream sent, when all of its text
	// had arrived. A proxy that holds back the tail of a delta (to mask a
	// secret that may continue in the next one) completes it only with a
	// later event.
	Whole []time.Duration
	// EventGaps are the times between consecutive events carrying text,
	// as they came off the wire.
	EventGaps []time.Duration
	// Events counts the events carrying text.
	Events int
	// Split counts the deltas whose text arrived over more than one event.
	Split int
}

// readStream reads an SSE chat completion stream up to "data: [DONE]",
// reassembling the text of choices[0].delta.content and timing each of
// the deltas want (the text of each delta the upstream sent) by the event
// that completes it. An event counts when its terminating blank line
// arrives. since returns the time elapsed since the request was sent.
func readStream(r io.Reader, want []string, since func() time.Duration) (streamTimes, error) {
	st := streamTimes{Whole: make([]time.Duration, 0, len(want))}
	ends := make([]int, len(want))
	total := 0
	for i, w := range want {
		total += len(w)
		ends[i] = total
	}
	full := strings.Join(want, "")
	br := bufio.NewReaderSize(r, 16<<10)
	var data []byte
	var text []byte
	var last time.Duration
	started := -1 // index of the event in which the next delta's first byte arrived
	line := make([]byte, 0, 512)
	for {
		line = line[:0]
		for {
			frag, err := br.ReadSlice('\n')
			line = append(line, frag...)
			if err == bufio.ErrBufferFull {
				if len(line) > 1<<20 {
					return st, fmt.Errorf("SSE line longer than 1 MiB")
				}
				continue
			}
			if err != nil {
				return st, fmt.Errorf("stream ended before [DONE] after %d events: %w", st.Events, err)
			}
			break
		}
		l := bytes.TrimRight(line, "\r\n")
		if len(l) > 0 {
			if v, ok := bytes.CutPrefix(l, []byte("data:")); ok {
				v = bytes.TrimPrefix(v, []byte(" "))
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, v...)
				if data == nil {
					data = []byte{}
				}
			}
			continue
		}
		// A blank line dispatches the event.
		if data == nil {
			continue
		}
		now := since()
		if string(data) == "[DONE]" {
			break
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return st, fmt.Errorf("event %d: %w", st.Events, err)
		}
		data = nil
		if len(ev.Choices) == 0 || ev.Choices[0].Delta.Content == "" {
			continue
		}
		if st.Events == 0 {
			st.First = now
		} else {
			st.EventGaps = append(st.EventGaps, now-last)
		}
		last = now
		event := st.Events
		st.Events++
		before := len(text)
		text = append(text, ev.Choices[0].Delta.Content...)
		if len(text) > len(full) || string(text) != full[:len(text)] {
			return st, fmt.Errorf("text differs from what the upstream sent after %d bytes", before)
		}
		for i := len(st.Whole); i < len(want); i++ {
			start := ends[i] - len(want[i])
			if started < 0 && start >= before && start < len(text) {
				started = event
			}
			if ends[i] > len(text) {
				break
			}
			st.Whole = append(st.Whole, now)
			if started != event {
				st.Split++
			}
			started = -1
		}
	}
	if len(st.Whole) != len(want) {
		return st, fmt.Errorf("got %d of %d deltas' text", len(st.Whole), len(want))
	}
	return st, nil
}
