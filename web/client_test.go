package web

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/approval"
	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

func TestClient(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	c, err := admin.NewClient(s.URL+"/", aliceToken, s.Client())
	if err != nil {
		t.Fatal(err)
	}
	c.SetPageSize(2)

	collect := func(q query.Query) []string {
		var got []*store.Record
		if err := c.Sessions(ctx, q, func(r *store.Record) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		return s.names(seqsOf(got))
	}
	if got, want := collect(query.Query{Repo: "acme/api"}), []string{"script", "stream", "stream-approval"}; !slices.Equal(got, want) {
		t.Errorf("repo: %v, want %v", got, want)
	}
	if got := collect(query.Query{}); len(got) < 7 {
		t.Errorf("all: %v", got)
	}
	if got, want := collect(query.Query{Limit: 3}), []string{"genesis", "refused", "claude"}; !slices.Equal(got, want) {
		t.Errorf("limit 3: %v, want %v", got, want)
	}

	d, err := c.Session(ctx, streamSession)
	if err != nil || d.Seq != s.log.seq["stream"] || d.Prompt == nil || *d.Prompt != streamPrompt {
		t.Fatalf("Session: %+v, %v", d, err)
	}
	var se *admin.StatusError
	if _, err := c.Session(ctx, "nope"); !errors.As(err, &se) || se.Status != 404 {
		t.Errorf("unknown session: %v", err)
	}

	var buf bytes.Buffer
	n, err := c.Export(ctx, &buf, store.ExportOptions{From: 1, Limit: 3, Bodies: true})
	if err != nil || n != 3 {
		t.Fatalf("Export: %d, %v", n, err)
	}
	if _, recs := parseExport(t, buf.Bytes()); len(recs) != 3 || recs[0].Seq != 1 {
		t.Errorf("export: %d records", len(recs))
	}

	held := s.hold(t, approval.Request{ID: "c1", Requester: "runner ci-1", RequesterName: "ci-1", Prompt: "p"})
	list, err := c.Approvals(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "c1" {
		t.Fatalf("Approvals: %+v, %v", list, err)
	}
	if r, err := c.Approval(ctx, "c1"); err != nil || r.Prompt != "p" {
		t.Errorf("Approval: %+v, %v", r, err)
	}
	if _, err := c.Decide(ctx, "c1", approval.Denied, ""); !errors.As(err, &se) || se.Status != 400 {
		t.Errorf("deny without reason: %v", err)
	}
	if _, err := c.Decide(ctx, "c1", "maybe", "x"); err == nil {
		t.Error("Decide accepted a bad decision")
	}
	dec, err := c.Decide(ctx, "c1", approval.Approved, "ship it")
	if err != nil || dec.By != "alice" || dec.Decision != approval.Approved {
		t.Fatalf("Decide: %+v, %v", dec, err)
	}
	if got := <-held; got.Decision != approval.Approved {
		t.Errorf("Hold: %+v", got)
	}
	if _, err := c.Decide(ctx, "c1", approval.Approved, ""); !errors.As(err, &se) || se.Status != 409 {
		t.Errorf("second decision: %v", err)
	}

	bad, _ := admin.NewClient(s.URL, "wrong", s.Client())
	if _, err := bad.Approvals(ctx); !errors.As(err, &se) || se.Status != 401 || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong token: %v", err)
	}
}
