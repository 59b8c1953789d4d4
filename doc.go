// Command sessctl is a TLS-intercepting egress proxy that gates CI runners'
// calls to the OpenAI API: it checks who the runner is, swaps in the real
// API key, applies rules to prompts and answers, and records every exchange
// in a tamper-evident log.
package main
