package store

import (
	"context"
	"testing"

	"go.etcd.io/bbolt"
)

func TestPrune(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true, CheckpointEvery: 5})
	ctx := context.Background()
	for i := range 20 {
		if _, err := s.Append(ctx, exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	// exchange(i) ends at i s + 0.5 s; prune records 1..10 (exchanges 0..9).
	res, err := s.Prune(ctx, exchange(10).Start)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pruned || res.From != 1 || res.To != 10 || res.Bodies != 20 || res.Seq != 21 {
		t.Fatalf("prune: %+v", res)
	}
	rec, req, resp, err := s.Get("5")
	if err != nil || req != nil || resp != nil || rec.Request == nil {
		t.Fatalf("pruned record: %v %q %q %+v", err, req, resp, rec)
	}
	if _, req, _, _ := s.Get("11"); req == nil {
		t.Fatal("record 11 lost its body")
	}
	// Nothing more to prune before the same time.
	if res, err := s.Prune(ctx, exchange(10).Start); err != nil || res.Pruned {
		t.Fatalf("second prune: %+v %v", res, err)
	}
	// The next prune continues where the last stopped.
	res, err = s.Prune(ctx, exchange(12).Start)
	if err != nil || res.From != 11 || res.To != 12 {
		t.Fatalf("third prune: %+v %v", res, err)
	}
	pr, _, _, err := s.Get("21")
	if err != nil || pr.Kind != KindPrune || pr.Extra["from"] != "1" || pr.Extra["to"] != "10" {
		t.Fatalf("prune record: %v %+v", err, pr)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, path, VerifyOptions{})
	if !rep.OK() || rep.PrunedBodies != 24 {
		t.Fatalf("pruned log: %+v", rep)
	}

	// A body deleted outside a pruned range is still tampering.
	rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.Bucket(bucketBodies).Delete(bodyKey(15, bodyRequest)) })
	rep = mustVerify(t, path, VerifyOptions{})
	if rep.OK() || rep.Problems[0].String() != "record 15: body missing" {
		t.Fatalf("after deleting a live body: %v", rep.Problems)
	}
}
