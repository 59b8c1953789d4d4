// Package usage reads what an exchange with a model API asks for and what
// it spends: the model a request names (read strictly, so that an
// allow-list cannot be bypassed by a second, differently spelled "model"),
// and the token usage the answer reports — in a whole JSON answer, in a
// streamed answer's server-sent events, or in a WebSocket event.
//
// Counts are copied as the provider reported them, never recomputed.
//
// For streamed chat completions, usage is only reported when the request
// sets stream_options.include_usage. [IncludeUsage] adds it to a request
// that did not ask, and a [Stream] created with strip set removes what
// that adds to the answer (the final usage chunk and the "usage": null
// member of every other chunk), so that the runner receives exactly the
// stream it asked for while sessctl still learns the usage.
//
// The package knows nothing of networking or storage beyond the
// [store.Usage] value it fills.
package usage
