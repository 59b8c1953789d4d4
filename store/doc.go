// Package store is sessctl's tamper-evident session log.
//
// Every exchange the proxy handles (and every refusal, approval, prune and
// shutdown) becomes one record. A record is encoded once into leaf bytes
// (see FORMAT.md), and those exact bytes are stored and hashed: each leaf
// names the hash of the previous leaf (a hash chain), and the leaf hashes
// are the leaves of an RFC 6962 Merkle tree kept with
// golang.org/x/mod/sumdb/tlog. Request and response bodies live apart from
// the leaves, bound to them by salted SHA-256 commitments, so they can be
// pruned without breaking the chain. Periodically, and at shutdown, the
// store signs a C2SP tlog-checkpoint with an Ed25519 note key kept outside
// the database.
//
// A [Store] is the single writer: one appender goroutine commits batches of
// records per bbolt transaction (group commit) and acknowledges a record
// only once it is fsynced. A [Reader] opens a log read-only for queries,
// proofs and [Verify], which recomputes every hash from the stored bytes.
// [Export] writes the log as JSON lines carrying each leaf's stored bytes,
// and [VerifyExport] checks such an export offline against signed
// checkpoints, with the same tree and checkpoint checks as Verify.
//
// Queries ([Store.List], [Filter]) use secondary indexes kept in the same
// file (by start time, session, and each filterable field's value), which
// carry no integrity guarantee: Verify never reads them, and Open rebuilds
// them when they are missing or behind.
package store
