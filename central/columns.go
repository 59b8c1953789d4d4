package central

import (
	"slices"

	"github.com/sessctl/sessctl/store"
)

// Columns are the values of a record that sessctl_leaves keeps beside the
// leaf for queries; nil is NULL (the record has no such value). They are
// derived from the leaf and never trusted by verification.
type Columns struct {
	SessionID  *string
	Repository *string // claim repository, else project_path
	Workflow   *string // claim workflow
	Run        *string // claim run_id, else pipeline_id
	SHA        *string // claim sha
	Actor      *string // claim actor, else user_login
	Runner     *string // identity.runner
	Outcome    *string
	Host       *string
	Model      *string
	Status     *int32
	Rules      []string // distinct names of the rules that fired; nil if none
}

// ColumnsOf extracts the query columns of a record.
func ColumnsOf(r *store.Record) Columns {
	id := &r.Identity
	first := func(names ...string) *string { return str(id.Claim(names...)) }
	c := Columns{
		SessionID:  str(r.SessionID),
		Repository: first("repository", "project_path"),
		Workflow:   first("workflow"),
		Run:        first("run_id", "pipeline_id"),
		SHA:        first("sha"),
		Actor:      first("actor", "user_login"),
		Runner:     str(r.Identity.Runner),
		Outcome:    str(string(r.Outcome)),
		Host:       str(r.Host),
		Model:      str(r.Model),
	}
	if r.Status != 0 {
		st := int32(r.Status)
		c.Status = &st
	}
	for _, h := range r.Rules {
		if !slices.Contains(c.Rules, h.Name) {
			c.Rules = append(c.Rules, h.Name)
		}
	}
	return c
}

func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
