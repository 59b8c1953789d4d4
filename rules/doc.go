// Package rules applies sessctl's rules to prompts and answers: it masks
// secrets, blocks what must not pass, and flags what needs approval.
//
// A [Set] is an ordered list of rules parsed from YAML ([Parse], [Load]) or
// the shipped secret ruleset ([Default]). [Set.Request] and [Set.Response]
// mask whole bodies; JSON bodies are masked string by string and stay valid
// JSON. [Set.NewSSE] masks a text/event-stream answer as it streams, and
// [Set.NewEventMasker] does the same for one JSON event at a time (SSE data
// or WebSocket messages): a secret that the model emits split across
// deltas is masked before any byte of it is written, while text that
// cannot become part of a masked value passes at once: only the secret
// group of a rule that has one is held back, not the key name before it.
//
// Patterns are Go (RE2) regular expressions, so matching takes linear time.
// Before running them, the scanner looks in one pass for the literal text
// every match of a rule must begin with (derived from the pattern), and
// runs a rule only where its literal occurs.
//
// The package knows nothing of networking or storage.
package rules
