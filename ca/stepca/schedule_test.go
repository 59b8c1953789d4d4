package stepca

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestRenewAt(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(24 * time.Hour)}
	tests := []struct {
		jitter float64
		want   time.Duration // after NotBefore
	}{
		{0, 16 * time.Hour},
		{0.05, 16*time.Hour + 72*time.Minute},
		{-0.05, 16*time.Hour - 72*time.Minute},
		{1, 16*time.Hour + 72*time.Minute},  // clamped
		{-1, 16*time.Hour - 72*time.Minute}, // clamped
	}
	for _, tt := range tests {
		if got := renewAt(cert, tt.jitter).Sub(nb); got != tt.want {
			t.Errorf("renewAt(jitter %v) = NotBefore+%v, want +%v", tt.jitter, got, tt.want)
		}
	}
	bad := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(-time.Hour)}
	if got := renewAt(bad, 0); !got.Equal(nb) {
		t.Errorf("renewAt(inverted validity) = %v, want NotBefore", got)
	}
}

func TestBackoff(t *testing.T) {
	const s, m = time.Second, time.Minute
	tests := []struct {
		name       string
		n          int
		min, max   time.Duration
		left       time.Duration
		frac, want float64 // want in seconds
	}{
		{"first", 1, s, 5 * m, time.Hour, 1, 1},
		{"doubles", 4, s, 5 * m, time.Hour, 1, 8},
		{"capped", 20, s, 5 * m, time.Hour, 1, 300},
		{"huge n", 1 << 30, s, 5 * m, time.Hour, 1, 300},
		{"jitter", 4, s, 5 * m, time.Hour, 0.5, 4},
		{"frac clamped low", 4, s, 5 * m, time.Hour, 0, 4},
		{"frac clamped high", 4, s, 5 * m, time.Hour, 7, 8},
		{"half of what is left", 20, s, 5 * m, 2 * m, 1, 60},
		{"expired", 20, s, 5 * m, -m, 1, 300},
		{"floor", 20, s, 5 * m, 10 * time.Millisecond, 1, 0.5},
		{"max below min", 3, 2 * s, s, time.Hour, 1, 2},
		{"zero min", 1, 0, 0, time.Hour, 1, 0.001},
	}
	for _, tt := range tests {
		got := backoff(tt.n, tt.min, tt.max, tt.left, tt.frac)
		if want := time.Duration(tt.want * float64(s)); got != want {
			t.Errorf("%s: backoff = %v, want %v", tt.name, got, want)
		}
	}
}
