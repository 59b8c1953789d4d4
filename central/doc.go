// Package central keeps a fleet's session logs in PostgreSQL.
//
// Each sessctl replica keeps its own bbolt log (package store) on the
// request path; with central_dsn set, a [Shipper] copies every leaf (the
// stored bytes, exactly), body and signed checkpoint of that log into
// PostgreSQL, in order and idempotently, keyed by the log's origin and the
// record's sequence number. [Verify] recomputes each origin's hash chain and
// Merkle tree from the shipped leaf bytes and checks the shipped
// checkpoints against keys the caller trusts, so the database is a
// verified copy, never a source of trust.
//
// [Fleet] reads the shipped logs as one session source (the filters of a
// replica's own log, answered from indexes, each record naming its
// origin), for `sessctl sessions --central`, the console and the admin API
// of a replica in a fleet. [Inbox] is the fleet's shared approval inbox:
// every replica's held requests, listed anywhere, each decided by the
// queue of the replica holding it (LISTEN/NOTIFY, polling as a fallback).
//
// The schema is created and upgraded by [Migrate] from the numbered SQL
// files embedded from migrations/ (NNNN_name.sql, applied in order, each
// once, recorded in sessctl_schema_migrations). A binary refuses a schema
// newer than the migrations it carries.
package central
