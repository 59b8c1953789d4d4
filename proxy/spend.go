package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sessctl/sessctl/budget"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/internal/claims"
	"github.com/sessctl/sessctl/rules"
	"github.com/sessctl/sessctl/store"
	"github.com/sessctl/sessctl/usage"
)

// This file holds what the proxy does for usage, budgets and model
// allow-lists: checking a request's model against its policy's models:,
// admitting it against the policy's budget:, asking a streamed chat
// completion for its usage, and accounting the usage an answer reports.
// Reading usage from bodies and events is package usage's; counting is
// package budget's.

// checkModel refuses a request whose model its policy does not allow, or
// whose model sessctl cannot read for certain. The model is the body's
// "model" as the upstream will read it; a query parameter or header that
// names a model must agree with it.
func (ex *exchange) checkModel(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if ex.policy == nil || len(ex.policy.Models) == 0 {
		return true
	}
	model, err := usage.Model(body)
	if pm := ex.prov.Model(r, nil); pm != "" {
		// The provider reads the model from the path (an Azure deployment):
		// that, not the body, is what the upstream serves.
		model, err = pm, nil
	}
	if err != nil {
		ex.refuse(w, refModelUnreadable.with(ex.policy.Name, strings.TrimPrefix(err.Error(), "usage: model: ")))
		return false
	}
	if other, ok := modelElsewhere(r, model); !ok {
		ex.refuse(w, refModelUnreadable.with(ex.policy.Name, fmt.Sprintf("the request also names model %.100q outside its body", other)))
		return false
	}
	if !usage.Allowed(ex.policy.Models, model) {
		ex.refuse(w, refModelNotAllowed.with(truncate(model, 100), ex.policy.Name))
		return false
	}
	return true
}

// modelElsewhere checks the query parameters and headers whose names
// mention a model: each must name the body's model. It returns the first
// that does not.
func modelElsewhere(r *http.Request, model string) (string, bool) {
	q, _ := url.ParseQuery(r.URL.RawQuery)
	for k, vs := range q {
		if strings.Contains(strings.ToLower(k), "model") {
			for _, v := range vs {
				if v != model {
					return v, false
				}
			}
		}
	}
	for k, vs := range r.Header {
		if strings.Contains(strings.ToLower(k), "model") {
			for _, v := range vs {
				if v != model {
					return v, false
				}
			}
		}
	}
	return "", true
}

// checkEventModel is checkModel for a WebSocket response.create event.
func (ex *exchange) checkEventModel(msg []byte) (refusal, bool) {
	if ex.policy == nil || len(ex.policy.Models) == 0 {
		return refusal{}, true
	}
	model, err := usage.EventModel(msg)
	if err != nil {
		return refModelUnreadable.with(ex.policy.Name, strings.TrimPrefix(err.Error(), "usage: model: ")), false
	}
	if !usage.Allowed(ex.policy.Models, model) {
		return refModelNotAllowed.with(truncate(model, 100), ex.policy.Name), false
	}
	return refusal{}, true
}

// admit counts the request against its policy's budget. Over budget, it
// returns the refusal to send, with the time until the window frees.
func (ex *exchange) admit(ctx context.Context) (refusal, time.Duration, bool) {
	if ex.policy == nil || len(ex.policy.Budget) == 0 {
		return refusal{}, 0, true
	}
	t, over, err := ex.s.opt.Budget.Admit(ctx, ex.policy.Name, ex.policy.Budget, func(name string) string {
		return identityAttr(ex.who, name)
	})
	if err != nil {
		ex.s.log.Error("budget counter unavailable", "policy", ex.policy.Name, "err", err)
		return refBudgetUnavailable, 0, false
	}
	if over != nil {
		l := over.Limit
		what := fmt.Sprintf("%d requests", l.Requests)
		if l.Tokens > 0 && over.Spent.Tokens >= l.Tokens {
			what = fmt.Sprintf("%d tokens", l.Tokens)
		}
		wait := over.RetryAfter.Round(time.Second)
		return refBudgetExceeded.with(ex.policy.Name, what, l.Per, l.Attr(), truncate(over.Value, 100), wait), over.RetryAfter, false
	}
	ex.ticket = t
	return refusal{}, 0, true
}

// admitBudget is admit for an HTTP request: over budget it answers 429
// with Retry-After (whole seconds, rounded up) and records the refusal.
func (ex *exchange) admitBudget(w http.ResponseWriter, r *http.Request) bool {
	ref, wait, ok := ex.admit(r.Context())
	if ok {
		return true
	}
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10))
	}
	if wait > maxSDKRetryAfter {
		// OpenAI's SDKs honour Retry-After only up to a minute and retry
		// sooner otherwise: tell them not to.
		w.Header().Set("X-Should-Retry", "false")
	}
	ex.refuse(w, ref)
	return false
}

// maxSDKRetryAfter is the longest Retry-After OpenAI's SDKs wait for;
// beyond it they would retry at once, so sessctl says not to retry.
const maxSDKRetryAfter = time.Minute

// identityAttr returns the value of a budget's by: attribute for id:
// "runner", "repository" (or GitLab's project_path), or a claim.
func identityAttr(id *identity.Identity, name string) string {
	if id == nil {
		return ""
	}
	switch name {
	case "runner":
		return id.Runner
	case "repository":
		return claims.First(id.Claims, "repository", "project_path")
	}
	return id.Claims[name]
}

// askUsage adds stream_options.include_usage to a streamed chat
// completion that did not ask for it, and notes that the answer's usage
// chunk must be stripped before the runner sees it.
func (ex *exchange) askUsage(path string, body []byte) []byte {
	if !usage.StreamsChat(path, body) {
		return body
	}
	out, changed := usage.IncludeUsage(body)
	if changed {
		ex.stripUsage = true
		ex.note("usage_requested", "true")
	}
	return out
}

// note sets an extra field of the record.
func (ex *exchange) note(k, v string) {
	if ex.rec.Extra == nil {
		ex.rec.Extra = map[string]string{}
	}
	ex.rec.Extra[k] = v
}

// streamUsage records the usage a stream reported; an answer that did not
// end normally keeps what was known, marked incomplete.
func (ex *exchange) streamUsage(u *store.Usage, outcome store.Outcome) {
	if outcome != store.OutcomeForwarded && u == nil {
		u = &store.Usage{Incomplete: true}
	}
	ex.rec.Usage = u
}

// account charges the exchange's budget tickets with the tokens its
// answer reported (the charges are written with the record) and counts
// the tokens in the metrics.
func (ex *exchange) account(outcome store.Outcome) {
	u := ex.rec.Usage
	if ex.ticket != nil {
		ex.rec.Charges = ex.ticket.Spend(context.Background(), u.Tokens())
		ex.ticket = nil
	}
	if u != nil {
		ex.s.opt.Metrics.addTokens(ex.rec.Model, string(outcome), u)
	}
}

// newMeter returns the meter the proxy admits requests with.
func newMeter(o Options) *budget.Meter {
	if o.Budget != nil {
		return o.Budget
	}
	return budget.NewMeter(budget.NewLocal(), nil)
}

// answerUsage reads the usage a whole answer reports: with package usage
// for the OpenAI dialect (chat, Responses, embeddings; Azure's are the
// same), else with the provider's own reader (Anthropic's Messages).
func (ex *exchange) answerUsage(data []byte, stream bool) *store.Usage {
	if ex.prov.Dialect() == rules.DialectOpenAI {
		u, _ := usage.FromJSON(data)
		return u
	}
	return ex.providerUsage(data, stream)
}

// providerUsage maps what the provider's reader finds to the record's
// usage: input counts every prompt token (cache reads and writes
// included), total stays 0 when the provider reports none (it is never
// computed).
func (ex *exchange) providerUsage(answer []byte, stream bool) *store.Usage {
	pu := ex.prov.Usage(answer, stream)
	if pu.IsZero() {
		return nil
	}
	return &store.Usage{
		Input:       pu.InputTokens + pu.CacheReadTokens + pu.CacheWriteTokens,
		CachedInput: pu.CacheReadTokens,
		Output:      pu.OutputTokens,
	}
}
