package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sessctl/sessctl/budget"
)

// Recording modes, the values of Policy.Record.
const (
	// RecordFull stores the masked prompt and answer.
	RecordFull = "full"
	// RecordMetadata stores the record without the bodies.
	RecordMetadata = "metadata"
)

// ApproveAlways, as Policy.Approve, holds every request for a human.
const ApproveAlways = "always"

// Policy is one entry of the ordered policies list: what an identity that
// matches may do.
type Policy struct {
	// Name identifies the policy in records and errors.
	Name string `yaml:"name"`
	// Match maps an attribute to a glob (path.Match syntax, so "*" does not
	// cross "/"). Attributes are "runner", "issuer", "subject", "method"
	// or one of PipelineClaims. An attribute the identity lacks never
	// matches, not even "*". All entries must match; an empty Match
	// matches every identity.
	Match map[string]string `yaml:"match,omitempty"`
	// Deny refuses the request.
	Deny bool `yaml:"deny,omitempty"`
	// Approve is "" or "always" (every request waits for a human).
	Approve string `yaml:"approve,omitempty"`
	// Record is "full" (the default) or "metadata".
	Record string `yaml:"record,omitempty"`
	// Key names the upstream key to inject; "" for the default key.
	Key string `yaml:"key,omitempty"`
	// Rules limits the rules applied to these names; empty for all.
	Rules []string `yaml:"rules,omitempty"`
	// Models, when set, is the allow-list of models (globs, path.Match
	// syntax, case-sensitive) a request may name, as the upstream will
	// read it; a request whose model cannot be read is refused.
	Models []string `yaml:"models,omitempty"`
	// Budget caps tokens and/or requests per window, counted per value of
	// an identity attribute (see package budget).
	Budget budget.Limits `yaml:"budget,omitempty"`
}

// RecordMode returns the policy's recording mode, RecordFull by default.
// A nil policy records in full.
func (p *Policy) RecordMode() string {
	if p == nil || p.Record == "" {
		return RecordFull
	}
	return p.Record
}

// NeedsApproval reports whether every request under p waits for a human.
func (p *Policy) NeedsApproval() bool {
	return p != nil && p.Approve == ApproveAlways
}

// PipelineClaims returns the names of the token claims kept in
// Identity.Claims and usable in Policy.Match and OIDCIssuer.Claims: those
// that identify a pipeline for GitHub Actions, GitLab CI, Buildkite and
// CircleCI.
func PipelineClaims() []string {
	return []string{
		// GitHub Actions.
		"repository", "repository_id", "repository_owner", "repository_owner_id",
		"workflow", "workflow_ref", "job_workflow_ref", "run_id", "run_attempt",
		"sha", "ref", "ref_type", "actor", "event_name", "environment",
		"runner_environment",
		// GitLab CI (sha, ref, ref_type, environment shared).
		"project_path", "project_id", "namespace_path", "namespace_id",
		"pipeline_id", "pipeline_source", "job_id", "user_login", "ref_protected",
		// Buildkite.
		"organization_slug", "pipeline_slug", "build_number", "build_branch",
		"build_commit", "step_key",
		// CircleCI.
		"oidc.circleci.com/project-id", "oidc.circleci.com/vcs-origin",
		"oidc.circleci.com/vcs-ref",
	}
}

// isPipelineClaim reports whether name is one of PipelineClaims.
func isPipelineClaim(name string) bool {
	return slices.Contains(PipelineClaims(), name)
}

// isPolicyAttr reports whether key is a match attribute that is not a claim.
func isPolicyAttr(key string) bool {
	switch key {
	case "runner", "issuer", "subject", "method":
		return true
	}
	return false
}

// attr returns the identity's value for a match attribute, "" if absent.
func (id *Identity) attr(key string) string {
	switch key {
	case "runner":
		return id.Runner
	case "issuer":
		return id.Issuer
	case "subject":
		return id.Subject
	case "method":
		return id.Method
	}
	return id.Claims[key]
}

// ParsePolicies parses a YAML list of policies (the value of the
// `policies:` config key), rejecting unknown keys, and validates it with
// ValidatePolicies. Record is filled with its default.
func ParsePolicies(data []byte) ([]Policy, error) {
	var ps []Policy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&ps); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("identity: parse policies: %w", err)
	}
	if err := ValidatePolicies(ps); err != nil {
		return nil, err
	}
	for i := range ps {
		ps[i].Record = ps[i].RecordMode()
	}
	return ps, nil
}

// ValidatePolicies checks each policy and returns an error naming the first
// bad one: missing or duplicate name, unknown match attribute, bad glob,
// unknown approve or record mode, or a deny policy with other effects.
func ValidatePolicies(policies []Policy) error {
	seen := make(map[string]bool, len(policies))
	for i, p := range policies {
		if strings.TrimSpace(p.Name) == "" {
			return fmt.Errorf("identity: policy #%d: missing name", i+1)
		}
		if seen[p.Name] {
			return fmt.Errorf("identity: policy %q: duplicate name", p.Name)
		}
		seen[p.Name] = true
		for k, glob := range p.Match {
			if !isPolicyAttr(k) && !isPipelineClaim(k) {
				return fmt.Errorf("identity: policy %q: unknown match attribute %q (want runner, issuer, subject, method or a pipeline claim)", p.Name, k)
			}
			if _, err := path.Match(glob, ""); err != nil {
				return fmt.Errorf("identity: policy %q: match %s: bad glob %q: %w", p.Name, k, glob, err)
			}
		}
		switch p.Approve {
		case "", ApproveAlways:
		default:
			return fmt.Errorf("identity: policy %q: unknown approve mode %q (want %q)", p.Name, p.Approve, ApproveAlways)
		}
		switch p.Record {
		case "", RecordFull, RecordMetadata:
		default:
			return fmt.Errorf("identity: policy %q: unknown record mode %q (want %q or %q)", p.Name, p.Record, RecordFull, RecordMetadata)
		}
		if p.Deny && (p.Approve != "" || p.Key != "" || len(p.Rules) > 0) {
			return fmt.Errorf("identity: policy %q: deny cannot be combined with approve, key or rules", p.Name)
		}
		if p.Deny && (len(p.Models) > 0 || len(p.Budget) > 0) {
			return fmt.Errorf("identity: policy %q: deny cannot be combined with models or budget", p.Name)
		}
		for _, m := range p.Models {
			if _, err := path.Match(m, ""); err != nil || strings.TrimSpace(m) == "" {
				return fmt.Errorf("identity: policy %q: models: bad glob %q", p.Name, m)
			}
		}
		for _, l := range p.Budget {
			if err := l.Validate(); err != nil {
				return fmt.Errorf("identity: policy %q: %w", p.Name, err)
			}
			if by := l.Attr(); by != "runner" && !isPipelineClaim(by) {
				return fmt.Errorf("identity: policy %q: budget: by %q: want runner or a pipeline claim (repository, workflow, ...)", p.Name, by)
			}
		}
		for _, r := range p.Rules {
			if strings.TrimSpace(r) == "" {
				return fmt.Errorf("identity: policy %q: empty rule name", p.Name)
			}
		}
	}
	return nil
}

// Match returns the first policy whose Match entries all match id, or nil
// if none does. Policies are assumed valid (see ValidatePolicies); a bad
// glob never matches. A nil id matches only policies with an empty Match.
func Match(policies []Policy, id *Identity) *Policy {
	if id == nil {
		id = &Identity{}
	}
	for i := range policies {
		if matches(policies[i].Match, id) {
			return &policies[i]
		}
	}
	return nil
}

// matches reports whether every glob of m matches id.
func matches(m map[string]string, id *Identity) bool {
	for k, glob := range m {
		if !globMatch(glob, id.attr(k)) {
			return false
		}
	}
	return true
}
