package identity_test

import (
	"context"
	"fmt"

	"github.com/sessctl/sessctl/identity"
)

func ExampleMatch() {
	policies, err := identity.ParsePolicies([]byte(`
- name: docs-bot
  match: {repository: acme/docs}
  record: metadata
- name: prod-deploys
  match: {repository: "acme/*", environment: production}
  approve: always
- name: default
  deny: true
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	id := &identity.Identity{Method: identity.MethodOIDC, Claims: map[string]string{"repository": "acme/api", "environment": "production"}}
	p := identity.Match(policies, id)
	fmt.Println(p.Name, p.NeedsApproval(), p.RecordMode())
	// Output: prod-deploys true full
}

func ExampleAuthenticator_Authenticate() {
	tok, _ := identity.NewRunnerToken() // printed once by `sessctl token new`
	a, err := identity.New(context.Background(), identity.Config{
		Runners: []identity.Runner{{Name: "ci-1", TokenSHA256: identity.HashToken(tok)}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cred := identity.ParseCredential("Bearer " + tok)
	id, err := a.Authenticate(context.Background(), cred)
	fmt.Println(id, err)
	_, err = a.Authenticate(context.Background(), "sct_guess")
	fmt.Println(err)
	// Output:
	// runner ci-1 <nil>
	// identity: unknown runner token
}
