package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/store"
)

// TokenHost is the name under which runners reach sessctl's own endpoints
// through the proxy: https://sessctl.internal/sessctl/v1/token exchanges a
// CI OIDC token for a sessctl session token. It is served only when
// Options.Exchanger is set and the CA may mint for it.
const TokenHost = "sessctl.internal"

// tokenPath is the token exchange endpoint.
const tokenPath = "/sessctl/v1/token"

// Exchanger trades a verified CI OIDC token for a session token bound to
// the same claims. *identity.Authenticator implements it.
type Exchanger interface {
	Exchange(ctx context.Context, oidcToken string) (token string, expires time.Time, err error)
}

// serveToken handles requests to TokenHost. Neither token is recorded:
// the record keeps the OIDC token's hash only.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, ex *exchange) {
	ex.rec.Recording = store.RecordingMetadata
	if r.URL.Path != tokenPath || r.Method != http.MethodPost {
		ex.refuse(w, refTokenNotFound.with(tokenPath))
		return
	}
	cred := identity.ParseCredential(r.Header.Get("Authorization"))
	if cred != "" {
		ex.rec.Identity.TokenHash = identity.HashToken(cred)
	}
	tok, exp, err := s.opt.Exchanger.Exchange(r.Context(), cred)
	if err != nil {
		ex.refuse(w, refBadOIDCToken.with(safeAuthReason(err)))
		return
	}
	if id, err := s.opt.Auth.Authenticate(r.Context(), tok); err == nil {
		ex.rec.Identity = store.Identity{Method: id.Method, Issuer: id.Issuer, Subject: id.Subject,
			TokenHash: ex.rec.Identity.TokenHash, Claims: id.Claims}
	}
	body, _ := json.Marshal(struct {
		Token     string    `json:"token"`
		TokenType string    `json:"token_type"`
		ExpiresAt time.Time `json:"expires_at"`
	}{tok, "Bearer", exp.UTC()})
	if !ex.finish(r.Context(), http.StatusOK, store.OutcomeForwarded, "session token issued") {
		writeError(w, refNotRecorded)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}
