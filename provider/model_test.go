package provider

import (
	"encoding/json"
	"strings"
	"testing"
)

// bodyModelDecoding is bodyModel as it was written with json.Unmarshal:
// the reading bodyModel must agree with.
func bodyModelDecoding(body []byte) string {
	var v struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Model) > 200 {
		return ""
	}
	return v.Model
}

var modelCases = []string{
	`{"model":"gpt-4o-mini","messages":[]}`,
	`{"messages":[],"model" : "o3"}`,
	`{"mod\u0065l":"o3"}`,
	`{"model":"gpt-4o","model":"o1-pro"}`,
	`{"model":"gpt-4o","MODEL":"o1-pro"}`,
	`{"model":"gpt-4o","model":null}`,
	`{"model":["gpt-4o"]}`,
	`{"model":1,"model":"x"}`,
	`{"model":"a\nb\u00e9"}`,
	"{\"model\":\"\xff\"}",
	`{"model":""}`,
	`[{"model":"gpt-4o"}]`,
	`null`,
	`{"model":"gpt-4o"} x`,
	`{"model":"` + strings.Repeat("a", 200) + `"}`,
	`{"model":"` + strings.Repeat("a", 201) + `"}`,
	`{"model":"` + strings.Repeat(`\u0061`, 200) + `"}`,
	`{"model":"` + strings.Repeat(`\u0061`, 201) + `"}`,
}

func TestBodyModelAgreesWithDecoding(t *testing.T) {
	for _, c := range modelCases {
		if got, want := bodyModel([]byte(c)), bodyModelDecoding([]byte(c)); got != want {
			t.Errorf("bodyModel(%q) = %q, decoding gives %q", c, got, want)
		}
	}
}

func FuzzBodyModel(f *testing.F) {
	for _, c := range modelCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := bodyModel(b), bodyModelDecoding(b); got != want {
			t.Fatalf("bodyModel(%q) = %q, decoding gives %q", b, got, want)
		}
	})
}

// BenchmarkBodyModel reads the model of a 1.6 KB chat completion request.
func BenchmarkBodyModel(b *testing.B) {
	body := []byte(`{"messages":[{"content":"You are a helpful assistant.","role":"system"},{"content":"` +
		strings.Repeat(`--- FAIL: TestLoadConfig (0.00s)\n    config_test.go:41: open testdata/config.yaml: no such file\n`, 14) +
		`","role":"user"}],"model":"gpt-4o-mini","stream":false,"temperature":0.2}`)
	for _, c := range []struct {
		name string
		f    func([]byte) string
	}{{"scan", bodyModel}, {"decoding", bodyModelDecoding}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if c.f(body) != "gpt-4o-mini" {
					b.Fatal("wrong model")
				}
			}
		})
	}
}
