package stepca

import (
	"crypto/x509"
	"time"
)

// Defaults for [Config].
const (
	DefaultTimeout    = 30 * time.Second // one request to step-ca
	DefaultMinBackoff = time.Second      // first retry after a failed renewal
	DefaultMaxBackoff = 5 * time.Minute  // longest wait between retries
)

// renewJitter is the fraction of a certificate's lifetime by which its
// renewal time is moved, either way, so that certificates issued together
// do not all renew in the same instant.
const renewJitter = 0.05

// renewAt returns when cert should be renewed: at two thirds of its
// lifetime, moved by jitter × lifetime, where jitter is in [-0.05, 0.05].
func renewAt(cert *x509.Certificate, jitter float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	if life <= 0 {
		return cert.NotBefore
	}
	j := min(max(jitter, -renewJitter), renewJitter)
	return cert.NotBefore.Add(life*2/3 + time.Duration(j*float64(life)))
}

// backoff returns how long to wait after the n-th consecutive failure
// (n ≥ 1) before trying again: minD doubled for each earlier failure, at
// most maxD, scaled by frac (in [0.5, 1], for jitter), and while the
// certificate is still valid, at most half of the time it has left, so
// that several attempts happen before it expires. It is never below
// minD/2 nor zero.
func backoff(n int, minD, maxD, left time.Duration, frac float64) time.Duration {
	if minD <= 0 {
		minD = time.Millisecond
	}
	if maxD < minD {
		maxD = minD
	}
	d := minD
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	frac = min(max(frac, 0.5), 1)
	d = time.Duration(float64(d) * frac)
	if left > 0 && d > left/2 {
		d = left / 2
	}
	return max(d, minD/2, time.Millisecond)
}
