package proxy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readmeErrors parses the table of errors a runner sees from README.md:
// each row's statuses ("403 / 421") times its `error.type`s.
func readmeErrors(t *testing.T) map[[2]string]bool {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := slices.IndexFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "| situation | status | `error.type` |")
	})
	if start < 0 {
		t.Fatal("README.md has no error table (| situation | status | `error.type` |)")
	}
	typeRE := regexp.MustCompile("`(sessctl_[a-z_]+)`")
	got := map[[2]string]bool{}
	for _, l := range lines[start+2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := strings.Split(strings.Trim(l, "| "), " | ")
		if len(cells) != 3 {
			t.Fatalf("README error table row with %d cells: %q", len(cells), l)
		}
		types := typeRE.FindAllStringSubmatch(cells[2], -1)
		if len(types) == 0 {
			t.Fatalf("README error table row without a type: %q", l)
		}
		for _, st := range strings.Split(cells[1], "/") {
			st = strings.TrimSpace(st)
			if _, err := strconv.Atoi(st); err != nil {
				t.Fatalf("README error table row with status %q: %q", st, l)
			}
			for _, ty := range types {
				got[[2]string{st, ty[1]}] = true
			}
		}
	}
	return got
}

// TestREADMEErrorTable checks README's error table against the refusals
// in code, both ways: every (status, type) the proxy can answer with is
// documented, and every documented one exists.
func TestREADMEErrorTable(t *testing.T) {
	doc := readmeErrors(t)
	code := map[[2]string]bool{}
	for _, r := range allRefusals {
		code[[2]string{strconv.Itoa(r.status), r.typ}] = true
	}
	for k := range code {
		if !doc[k] {
			t.Errorf("the proxy answers %s %s, which README's error table does not list", k[0], k[1])
		}
	}
	for k := range doc {
		if !code[k] {
			t.Errorf("README's error table lists %s %s, which no refusal in proxy/errors.go has", k[0], k[1])
		}
	}
}

// TestAllRefusals checks that allRefusals holds every refusal declared in
// errors.go, each once, and that each is complete.
func TestAllRefusals(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := 0
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for _, v := range vs.Values {
			if cl, ok := v.(*ast.CompositeLit); ok {
				if id, ok := cl.Type.(*ast.Ident); ok && id.Name == "refusal" {
					declared++
				}
			}
		}
		return true
	})
	if declared != len(allRefusals) {
		t.Errorf("errors.go declares %d refusals, allRefusals lists %d", declared, len(allRefusals))
	}
	for i, r := range allRefusals {
		if slices.Contains(allRefusals[:i], r) {
			t.Errorf("refusal %+v listed twice", r)
		}
		if r.status < 400 || !strings.HasPrefix(r.typ, "sessctl_") || r.msg == "" {
			t.Errorf("incomplete refusal %+v", r)
		}
		if r.code == "" && r != refRuleBlocked && r != refAnswerBlocked {
			t.Errorf("refusal %+v has no code", r)
		}
	}
}

// TestRefusalTemplates checks that filling a template reproduces the
// messages runners saw before the refusals were named, and that an
// argument is never read as a template.
func TestRefusalTemplates(t *testing.T) {
	cases := []struct {
		got  refusal
		want string
	}{
		{refHostMismatch.with("a.example", "b.example"), `request for "a.example" inside a tunnel to "b.example"`},
		{refPlainHTTPS.with("api.openai.com"), "plain HTTP to api.openai.com is refused: use https://api.openai.com"},
		{refApprovalDenied.detail("no"), "an approver denied this request: no"},
		{refApprovalDenied.detail(""), "an approver denied this request"},
		{refApprovalPending.with("rule x", "id1"), "this request needs human approval (rule x); approval id id1; send it again once approved"},
		{refBadCredential.with("100% wrong %s"), "sessctl: 100% wrong %s; present a runner token or CI OIDC token as the bearer credential"},
		{refBadQuery.with(), "malformed query string"},
	}
	for _, tc := range cases {
		if tc.got.msg != tc.want {
			t.Errorf("message %q, want %q", tc.got.msg, tc.want)
		}
	}
}
