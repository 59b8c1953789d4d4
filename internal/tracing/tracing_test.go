package tracing

import (
	"context"
	"strings"
	"testing"
)

func TestEndpointURL(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{"http://collector:4318", "http://collector:4318/v1/traces", ""},
		{"http://collector:4318/", "http://collector:4318/v1/traces", ""},
		{"https://otel.example/custom/traces", "https://otel.example/custom/traces", ""},
		{"collector:4318", "", "not an http"},
		{"grpc://collector:4317", "", "not an http"},
		{"http://", "", "not an http"},
		{"", "", "not an http"},
	}
	for _, c := range cases {
		got, err := EndpointURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("EndpointURL(%q) = %q, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("EndpointURL(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestOpenOffWithoutEndpoint(t *testing.T) {
	tp, stop, err := Open("")
	if err != nil || tp != nil {
		t.Fatalf("Open(\"\") = %v, %v; want tracing off", tp, err)
	}
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open("ftp://x"); err == nil {
		t.Fatal("Open accepted an ftp:// endpoint")
	}
}
