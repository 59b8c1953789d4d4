// Package tracing exports sessctl's OpenTelemetry spans to a collector over
// OTLP/HTTP (protobuf), with the official Go SDK. Tracing is opt-in: serve
// builds a provider only when otel_endpoint is set. The spans themselves are
// made by the proxy (one per exchange, GenAI semantic conventions).
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure New.
type Options struct {
	// BatchTimeout is the longest a span waits before it is exported
	// (default 5s).
	BatchTimeout time.Duration
}

// New returns a tracer provider that batches spans and sends them to the
// OTLP/HTTP collector at endpoint: a base URL (http://collector:4318), to
// which /v1/traces is added when it has no path, or the full URL of the
// traces endpoint. http:// sends in clear, https:// verifies the
// collector's certificate. The caller must Shutdown the provider, which
// flushes the spans still waiting.
func New(endpoint string, o Options) (*sdktrace.TracerProvider, error) {
	target, err := EndpointURL(endpoint)
	if err != nil {
		return nil, err
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 5 * time.Second
	}
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(target),
		// The collector is addressed directly, never through a proxy
		// from the environment (which may be sessctl itself).
		otlptracehttp.WithHTTPClient(&http.Client{
			Transport: &http.Transport{Proxy: nil, TLSHandshakeTimeout: 10 * time.Second},
			Timeout:   10 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: exporter for %s: %w", target, err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "sessctl"),
		attribute.String("service.version", version()),
	)
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(o.BatchTimeout)),
		sdktrace.WithResource(res),
	), nil
}

// EndpointURL checks an otel_endpoint value and returns the URL spans are
// posted to.
func EndpointURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("tracing: otel_endpoint %q is not an http:// or https:// URL", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// version is sessctl's module version, or "devel".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// Open is New for serve's configuration: with an empty endpoint tracing is
// off, and Open returns a nil provider and a shutdown that does nothing.
// Shutdown flushes the spans still waiting, within ctx.
func Open(endpoint string) (trace.TracerProvider, func(ctx context.Context) error, error) {
	if endpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	tp, err := New(endpoint, Options{})
	if err != nil {
		return nil, nil, err
	}
	return tp, tp.Shutdown, nil
}
