package runnerenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40123}
	for _, tc := range []struct {
		name, listen, ca string
		want             Env
		wantErr          bool
	}{
		{"port 0 shows the bound port", "127.0.0.1:0", "/d/ca.crt", Env{ProxyURL: "http://127.0.0.1:40123", Token: "tok", CAFile: "/d/ca.crt"}, false},
		{"fixed port", "127.0.0.1:40123", "/d/ca.crt", Env{ProxyURL: "http://127.0.0.1:40123", Token: "tok", CAFile: "/d/ca.crt"}, false},
		{"relative CA made absolute", "127.0.0.1:3128", "data/ca/ca.crt", Env{ProxyURL: "http://127.0.0.1:40123", Token: "tok", CAFile: filepath.Join(wd, "data/ca/ca.crt")}, false},
		{"all interfaces", ":3128", "/ca.crt", Env{ProxyURL: "http://127.0.0.1:40123", Token: "tok", CAFile: "/ca.crt"}, false},
		{"unspecified v4", "0.0.0.0:0", "/ca.crt", Env{ProxyURL: "http://127.0.0.1:40123", Token: "tok", CAFile: "/ca.crt"}, false},
		{"unspecified v6", "[::]:0", "/ca.crt", Env{ProxyURL: "http://127.0.0.1:40123", Token: "tok", CAFile: "/ca.crt"}, false},
		{"named host", "proxy.example:3128", "/ca.crt", Env{ProxyURL: "http://proxy.example:40123", Token: "tok", CAFile: "/ca.crt"}, false},
		{"v6 host", "[::1]:0", "/ca.crt", Env{ProxyURL: "http://[::1]:40123", Token: "tok", CAFile: "/ca.crt"}, false},
		{"no port", "127.0.0.1", "/ca.crt", Env{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := New(tc.listen, bound, "tok", tc.ca)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New(%q) error = %v, want error %v", tc.listen, err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("New(%q) = %+v, want %+v", tc.listen, got, tc.want)
			}
		})
	}
}

// TestWriteExportsInAShell evaluates the printed lines in a real shell, from
// another directory, and checks what a runner's environment then holds.
func TestWriteExportsInAShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh: cannot evaluate the printed lines")
	}
	for _, ca := range []string{"/tmp/data/ca/ca.crt", "/tmp/a dir/it's/ca.crt"} {
		e := Env{ProxyURL: "http://127.0.0.1:3128", Token: "sct_abc-DEF_123", CAFile: ca}
		var b strings.Builder
		if err := e.WriteExports(&b, "  "); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 4 || lines[1] != "  export OPENAI_API_KEY=sct_abc-DEF_123" || lines[2] != "  export CODEX_API_KEY=sct_abc-DEF_123" {
			t.Fatalf("printed lines:\n%s", b.String())
		}
		cmd := exec.Command(sh, "-c", b.String()+"env")
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sh: %v\n%s", err, b.String())
		}
		env := strings.Split(string(out), "\n")
		for _, v := range e.Vars() {
			if !slices.Contains(env, v) {
				t.Errorf("after the printed lines, the shell lacks %q; it has:\n%s", v, out)
			}
		}
	}
}

func TestVarsCoverEveryClient(t *testing.T) {
	e := Env{ProxyURL: "http://p:1", Token: "t", CAFile: "/ca"}
	want := []string{
		"HTTPS_PROXY=http://p:1",
		"OPENAI_API_KEY=t", "CODEX_API_KEY=t",
		"SSL_CERT_FILE=/ca", "REQUESTS_CA_BUNDLE=/ca", "NODE_EXTRA_CA_CERTS=/ca", "CURL_CA_BUNDLE=/ca",
	}
	if got := e.Vars(); !slices.Equal(got, want) {
		t.Errorf("Vars() = %q, want %q", got, want)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/abs/ca.crt":          "/abs/ca.crt",
		"http://[::1]:3128":    "'http://[::1]:3128'",
		"/a b/ca.crt":          "'/a b/ca.crt'",
		"/it's":                `'/it'\''s'`,
		"":                     "''",
		"/x/$HOME/`id`/ca.crt": "'/x/$HOME/`id`/ca.crt'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestExtraKeyVars: with api.anthropic.com intercepted the server adds
// ANTHROPIC_API_KEY; it is printed and exported after the OpenAI ones.
func TestExtraKeyVars(t *testing.T) {
	e := Env{ProxyURL: "http://127.0.0.1:3128", Token: "sct_x", CAFile: "/ca.crt", ExtraKeyVars: []string{"ANTHROPIC_API_KEY"}}
	var b strings.Builder
	if err := e.WriteExports(&b, ""); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 5 || lines[3] != "export ANTHROPIC_API_KEY=sct_x" {
		t.Fatalf("exports:\n%s", b.String())
	}
	if v := e.Vars(); !slices.Contains(v, "ANTHROPIC_API_KEY=sct_x") || slices.Contains(KeyVars, "ANTHROPIC_API_KEY") {
		t.Fatalf("Vars() = %v (KeyVars %v must stay unchanged)", v, KeyVars)
	}
}
