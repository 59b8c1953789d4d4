package store

import (
	"encoding/binary"
	"time"
)

// Bucket names. FORMAT.md describes each bucket's keys and values.
var (
	bucketMeta        = []byte("meta")
	bucketLeaves      = []byte("leaves")
	bucketTree        = []byte("tree")
	bucketBodies      = []byte("bodies")
	bucketCheckpoints = []byte("checkpoints")
	bucketSessions    = []byte("sessions")
	bucketTimes       = []byte("times")
	bucketPending     = []byte("pending")
	bucketIndex       = []byte("index")
)

// Keys of the meta bucket.
var (
	metaFormat    = []byte("format")
	metaOrigin    = []byte("origin")
	metaPublicKey = []byte("public_key")
	metaSecret    = []byte("secret")
	metaHead      = []byte("head")
	metaPrunedTo  = []byte("pruned_to")
	metaProbe     = []byte("probe")
	metaIndexed   = []byte("indexed")
	// metaJournal is the number of the last journal batch the bbolt
	// file holds (see journal.go).
	metaJournal = []byte("journal")
)

// dbFormat is the value of meta/format in a sessctl log.
const dbFormat = "sessctl/db/v1"

// Body kinds, the last byte of a bodies key.
const (
	bodyRequest  = 'q'
	bodyResponse = 'r'
)

// saltSize is the size of the random salt stored before each body.
const saltSize = 32

func u64key(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

func bodyKey(seq uint64, kind byte) []byte {
	var b [9]byte
	binary.BigEndian.PutUint64(b[:], seq)
	b[8] = kind
	return b[:]
}

// timeKey orders records by start time, then sequence number.
func timeKey(t time.Time, seq uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], timeBits(t))
	binary.BigEndian.PutUint64(b[8:], seq)
	return b[:]
}

// timeBits maps t to an unsigned integer that sorts like t; times before
// 1970 map to 0.
func timeBits(t time.Time) uint64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	if t.Year() > 2261 {
		return 1<<63 - 1
	}
	return uint64(t.UnixNano())
}

// sessionKey indexes a record by session id; several records (an approval
// and its exchange) may share one.
func sessionKey(id string, seq uint64) []byte {
	b := make([]byte, 0, len(id)+9)
	b = append(b, id...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, seq)
}
