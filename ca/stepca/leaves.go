package stepca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/sessctl/sessctl/ca"
)

// Config configures [NewLeaves].
type Config struct {
	CAURL    string         // step-ca's URL, e.g. https://ca.internal:9000
	Roots    *x509.CertPool // step-ca's root(s); required
	Dir      string         // certificates are kept in Dir/leaves; required
	Hosts    []string       // the only hosts certificates are obtained for; required
	Lifetime time.Duration  // requested lifetime; 0 = the provisioner's default

	// Provisioner and Password name a JWK provisioner and the password
	// that decrypts its key: with them, Leaves makes its own one-time
	// tokens, and can obtain a certificate for any of Hosts at any time.
	Provisioner string
	Password    []byte
	// Token is a one-time token from "step ca token", used once for the
	// first certificate of the host it names. Without a password,
	// certificates are then renewed with themselves (step-ca's /renew),
	// which works only while they are valid.
	Token string

	// Timeout bounds one request to step-ca; default [DefaultTimeout].
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between renewal attempts
	// after a failure; defaults [DefaultMinBackoff], [DefaultMaxBackoff].
	MinBackoff, MaxBackoff time.Duration
	// Logger receives renewals and failures; default slog.Default().
	Logger *slog.Logger
}

// Stats are counters for metrics.
type Stats struct {
	Issued       uint64 // certificates obtained for a host that had none (or an expired one)
	Renewals     uint64 // certificates replaced before they expired
	Failures     uint64 // failed attempts to obtain or renew a certificate
	Certificates int    // hosts holding a certificate now, expired or not
}

// Leaves obtains, keeps and renews a certificate from step-ca for each
// intercepted host; sessctl holds no CA key. Its GetCertificate fits
// [tls.Config.GetCertificate]. It is safe for concurrent use; Close stops
// its renewals.
type Leaves struct {
	cfg    Config
	hosts  map[string]bool
	names  string // hosts for error messages
	client *client
	log    *slog.Logger
	now    func() time.Time
	jitter func() float64 // in [-1, 1]

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	group  singleflight.Group
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	token  string // unused one-time token, "" once used
	certs  map[string]*entry

	issued, renewals, failures atomic.Uint64
}

// entry is one host's current certificate and its renewal timer.
type entry struct {
	cert     *tls.Certificate
	renewAt  time.Time
	failures int // consecutive failed renewals
	timer    *time.Timer
}

// NewLeaves returns a Leaves that serves the certificates kept in
// cfg.Dir/leaves and obtains the others on demand. It does not contact
// step-ca: a certificate kept on disk serves even while step-ca is down.
// Kept certificates that expired, are not for a configured host, or do not
// chain to cfg.Roots are ignored; a key file that group or others can read
// is refused.
func NewLeaves(cfg Config) (*Leaves, error) {
	if cfg.Roots == nil {
		return nil, errors.New("stepca: no root given (--root)")
	}
	if cfg.Dir == "" {
		return nil, errors.New("stepca: no directory given (--dir)")
	}
	if cfg.Lifetime < 0 {
		return nil, fmt.Errorf("stepca: negative lifetime %v", cfg.Lifetime)
	}
	hosts, err := ca.NormalizeHosts(cfg.Hosts)
	if err != nil {
		return nil, fmt.Errorf("stepca: %w", err)
	}
	if len(hosts) == 0 {
		return nil, errors.New("stepca: no hosts to obtain certificates for")
	}
	if cfg.Password != nil && cfg.Provisioner == "" {
		return nil, errors.New("stepca: a provisioner password needs the provisioner's name (--provisioner)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Token != "" {
		if _, err := parseToken(cfg.Token); err != nil {
			return nil, err
		}
	}
	c, err := newClient(cfg.CAURL, cfg.Roots, cfg.Timeout, cfg.Provisioner, cfg.Password)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, leavesDir), 0o700); err != nil {
		return nil, fmt.Errorf("stepca: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Leaves{
		cfg:    cfg,
		hosts:  make(map[string]bool, len(hosts)),
		names:  strings.Join(hosts, ", "),
		client: c,
		log:    cfg.Logger,
		now:    time.Now,
		jitter: func() float64 { return rand.Float64()*2 - 1 },
		ctx:    ctx,
		cancel: cancel,
		token:  cfg.Token,
		certs:  make(map[string]*entry),
	}
	for _, h := range hosts {
		l.hosts[h] = true
	}
	for _, h := range hosts {
		cert, err := l.load(h)
		if err != nil {
			cancel()
			return nil, err
		}
		if cert != nil {
			l.mu.Lock()
			l.install(h, cert)
			l.mu.Unlock()
		}
	}
	return l, nil
}

// bundlePath is where the key and certificate chain for host are kept.
func (l *Leaves) bundlePath(host string) string {
	return filepath.Join(l.cfg.Dir, leavesDir, host+".pem")
}

// load reads the kept certificate for host; nil without error when there
// is none worth using.
func (l *Leaves) load(host string) (*tls.Certificate, error) {
	path := l.bundlePath(host)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err := checkKeyMode(path); err != nil {
		return nil, fmt.Errorf("stepca: private key: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stepca: read kept certificate: %w", err)
	}
	cert, err := parseBundle(data)
	clear(data)
	if err != nil {
		l.log.Warn("stepca: ignoring a kept certificate that cannot be used", "path", path, "err", err)
		return nil, nil
	}
	if err := l.verify(host, cert); err != nil {
		l.log.Warn("stepca: ignoring a kept certificate", "path", path, "err", err)
		return nil, nil
	}
	return cert, nil
}

// verify checks that cert is for host, valid now and chains to the roots.
func (l *Leaves) verify(host string, cert *tls.Certificate) error {
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("chain certificate: %w", err)
		}
		inter.AddCert(c)
	}
	_, err := cert.Leaf.Verify(x509.VerifyOptions{
		DNSName:       host,
		Roots:         l.cfg.Roots,
		Intermediates: inter,
		CurrentTime:   l.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("certificate for %s does not verify: %w", host, err)
	}
	return nil
}

// GetCertificate returns the certificate for the client's SNI name; it fits
// [tls.Config.GetCertificate]. A host without a valid certificate gets one
// from step-ca during the handshake; clients that send no SNI, or a name
// not enrolled, get an error and the handshake fails.
func (l *Leaves) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello == nil || hello.ServerName == "" {
		return nil, errors.New("stepca: the client sent no server name (SNI); cannot choose a certificate")
	}
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return l.Certificate(ctx, hello.ServerName)
}

// Certificate returns the current certificate for host, obtaining one from
// step-ca when it has none that is valid. Concurrent calls for the same
// host ask step-ca once. An expired certificate is never returned.
func (l *Leaves) Certificate(ctx context.Context, host string) (*tls.Certificate, error) {
	host = ca.NormalizeName(host)
	if !l.hosts[host] {
		return nil, fmt.Errorf("stepca: refusing to obtain a certificate for %.100q: %w (enrolled: %s)", host, ErrNotIntercepted, l.names)
	}
	if c := l.valid(host); c != nil {
		return c, nil
	}
	v, err, _ := l.group.Do(host, func() (any, error) {
		if c := l.valid(host); c != nil {
			return c, nil
		}
		// The first handshake's cancellation must not fail the others
		// waiting for the same host.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*l.cfg.Timeout)
		defer cancel()
		return l.obtain(ctx, host, false)
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// valid returns host's certificate if it has not expired.
func (l *Leaves) valid(host string) *tls.Certificate {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.certs[host]; e != nil && l.now().Before(e.cert.Leaf.NotAfter) {
		return e.cert
	}
	return nil
}

// Renew obtains a new certificate for host now, ahead of its schedule. On
// failure the current certificate keeps serving until it expires.
func (l *Leaves) Renew(ctx context.Context, host string) error {
	host = ca.NormalizeName(host)
	if !l.hosts[host] {
		return fmt.Errorf("stepca: refusing to renew a certificate for %.100q: %w (enrolled: %s)", host, ErrNotIntercepted, l.names)
	}
	_, err, _ := l.group.Do(host, func() (any, error) {
		return l.obtain(ctx, host, true)
	})
	return err
}

// obtain gets a certificate for host from step-ca, keeps it and schedules
// its renewal. A renewal replaces a current certificate; otherwise host
// has none that is valid.
func (l *Leaves) obtain(ctx context.Context, host string, renewal bool) (*tls.Certificate, error) {
	cert, err := l.request(ctx, host)
	if err == nil {
		err = l.verify(host, cert)
		if err != nil {
			err = fmt.Errorf("stepca: step-ca's answer for %s: %w", host, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.certs[host]
	if err != nil {
		l.failures.Add(1)
		if old != nil && !l.now().Before(old.cert.Leaf.NotAfter) {
			return nil, fmt.Errorf("stepca: the certificate for %s expired on %s and could not be renewed: %w",
				host, old.cert.Leaf.NotAfter.UTC().Format(time.RFC3339), err)
		}
		return nil, err
	}
	if renewal && old != nil && l.now().Before(old.cert.Leaf.NotAfter) {
		l.renewals.Add(1)
	} else {
		l.issued.Add(1)
	}
	if werr := l.keep(host, cert); werr != nil {
		// The certificate is good: serve it, and obtain another after a
		// restart.
		l.log.Error("stepca: cannot keep the new certificate on disk", "host", host, "err", werr)
	}
	l.install(host, cert)
	l.log.Info("stepca: certificate obtained", "host", host, "renewal", renewal,
		"not_after", cert.Leaf.NotAfter, "renew_at", l.certs[host].renewAt)
	return cert, nil
}

// request asks step-ca for a certificate for host by the best means at
// hand: the one-time token if it is unused and names host, a token of our
// own, or a renewal authenticated by the current certificate.
func (l *Leaves) request(ctx context.Context, host string) (*tls.Certificate, error) {
	l.mu.Lock()
	tok := l.token
	var cur *tls.Certificate
	if e := l.certs[host]; e != nil && l.now().Before(e.cert.Leaf.NotAfter) {
		cur = e.cert
	}
	l.mu.Unlock()
	if tok != "" {
		if claims, err := parseToken(tok); err == nil && containsFold(claims.SANs, host) {
			cert, err := l.client.sign(ctx, tok, l.cfg.Lifetime)
			if err == nil || !errors.Is(err, ErrUnavailable) {
				// step-ca accepts a token once, and one it refused will
				// not do better next time.
				l.mu.Lock()
				l.token = ""
				l.mu.Unlock()
			}
			return cert, err
		}
	}
	if l.client.canSign() {
		tok, err := l.client.token(host, host)
		if err != nil {
			return nil, err
		}
		cert, err := l.client.sign(ctx, tok, l.cfg.Lifetime)
		if isUnauthorized(err) {
			// The provisioner's key may have changed: fetch it again next time.
			l.client.forgetProvisioner()
		}
		return cert, err
	}
	if cur != nil {
		return l.client.renew(ctx, cur)
	}
	return nil, fmt.Errorf("stepca: no valid certificate for %s and no way to obtain one: without a provisioner password (--password-file), enroll again with a one-time token for it (step ca token %s)", host, host)
}

// containsFold reports whether list holds s, ignoring case.
func containsFold(list []string, s string) bool {
	for _, v := range list {
		if ca.NormalizeName(v) == s {
			return true
		}
	}
	return false
}

// keep writes host's key and chain to Dir/leaves/HOST.pem, mode 0600.
func (l *Leaves) keep(host string, cert *tls.Certificate) error {
	data, err := encodeBundle(cert)
	if err != nil {
		return fmt.Errorf("stepca: %w", err)
	}
	defer clear(data)
	return writeFileAtomic(l.bundlePath(host), data, 0o600)
}

// install makes cert host's current certificate and schedules its
// renewal. l.mu is held.
func (l *Leaves) install(host string, cert *tls.Certificate) {
	e := l.certs[host]
	if e == nil {
		e = &entry{}
		l.certs[host] = e
	}
	if e.timer != nil {
		e.timer.Stop()
	}
	e.cert = cert
	e.failures = 0
	e.renewAt = renewAt(cert.Leaf, l.jitter()*renewJitter)
	l.scheduleLocked(host, e, e.renewAt.Sub(l.now()))
}

// scheduleLocked arms host's renewal timer to fire after d. l.mu is held.
func (l *Leaves) scheduleLocked(host string, e *entry, d time.Duration) {
	if l.closed {
		return
	}
	e.timer = time.AfterFunc(max(d, 0), func() { l.renewInBackground(host) })
}

// renewInBackground is a renewal timer firing: it renews host and, on
// failure, schedules the next attempt with backoff.
func (l *Leaves) renewInBackground(host string) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	defer l.wg.Done()

	ctx, cancel := context.WithTimeout(l.ctx, 2*l.cfg.Timeout)
	defer cancel()
	_, err, _ := l.group.Do(host, func() (any, error) {
		return l.obtain(ctx, host, true)
	})
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.certs[host]
	if e == nil || l.closed {
		return
	}
	e.failures++
	now := l.now()
	left := e.cert.Leaf.NotAfter.Sub(now)
	wait := backoff(e.failures, l.cfg.MinBackoff, l.cfg.MaxBackoff, left, 0.75+l.jitter()/4)
	if left > 0 {
		l.log.Warn("stepca: renewal failed; the current certificate keeps serving",
			"host", host, "attempt", e.failures, "not_after", e.cert.Leaf.NotAfter, "retry_in", wait, "err", err)
	} else {
		l.log.Error("stepca: renewal failed and the certificate has expired; handshakes for this host fail",
			"host", host, "attempt", e.failures, "expired", e.cert.Leaf.NotAfter, "retry_in", wait, "err", err)
	}
	l.scheduleLocked(host, e, wait)
}

// Stats returns the counters.
func (l *Leaves) Stats() Stats {
	l.mu.Lock()
	n := len(l.certs)
	l.mu.Unlock()
	return Stats{
		Issued:       l.issued.Load(),
		Renewals:     l.renewals.Load(),
		Failures:     l.failures.Load(),
		Certificates: n,
	}
}

// NextRenewal returns when host's certificate is due for renewal, and
// false when host has none.
func (l *Leaves) NextRenewal(host string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.certs[ca.NormalizeName(host)]
	if e == nil {
		return time.Time{}, false
	}
	return e.renewAt, true
}

// Close stops renewals, waits for one in progress to end and drops idle
// connections to step-ca. Certificates already obtained keep serving.
func (l *Leaves) Close() error {
	l.mu.Lock()
	l.closed = true
	for _, e := range l.certs {
		if e.timer != nil {
			e.timer.Stop()
		}
	}
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
	l.client.close()
	return nil
}
