package ca

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLRU(t *testing.T) {
	tests := []struct {
		name string
		ops  string // a<name>: add, g<name>: get; space-separated
		max  int
		want string // names left, most recent first
	}{
		{"under bound", "aa ab", 3, "b a"},
		{"evicts least recent", "aa ab ac ad", 3, "d c b"},
		{"get refreshes", "aa ab ac ga ad", 3, "d a c"},
		{"re-add refreshes", "aa ab ac aa ad", 3, "d a c"},
		{"bound one", "aa ab", 1, "b"},
		{"miss changes nothing", "aa gz ab", 2, "b a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newLRU(tt.max)
			for _, op := range strings.Fields(tt.ops) {
				switch op[0] {
				case 'a':
					c.add(op[1:], leafEntry{})
				case 'g':
					c.get(op[1:])
				}
			}
			var got []string
			for el := c.order.Front(); el != nil; el = el.Next() {
				got = append(got, el.Value.(*lruItem).name)
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("order = %q, want %q", g, tt.want)
			}
			if c.len() != len(c.items) {
				t.Errorf("list has %d entries, map %d", c.len(), len(c.items))
			}
		})
	}
}

func TestLeafCacheBound(t *testing.T) {
	var hosts []string
	for i := range 10 {
		hosts = append(hosts, fmt.Sprintf("h%d.openai.com", i))
	}
	_, a := newTestCA(t, InitOptions{Hosts: hosts}, LoadOptions{CacheSize: 3})
	for _, h := range hosts {
		if _, err := a.Leaf(h); err != nil {
			t.Fatal(err)
		}
	}
	if s := a.Stats(); s.Cached != 3 || s.Minted != 10 {
		t.Fatalf("stats %+v, want 3 cached of 10 minted", s)
	}
	// The last three are cached, the first was evicted.
	if _, err := a.Leaf(hosts[9]); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Hits != 1 || s.Minted != 10 {
		t.Errorf("recent name: stats %+v, want a hit", s)
	}
	if _, err := a.Leaf(hosts[0]); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Minted != 11 || s.Cached != 3 {
		t.Errorf("evicted name: stats %+v, want a new mint and the bound kept", s)
	}
}

func TestLeafRemintedBeforeExpiry(t *testing.T) {
	_, a := newTestCA(t, InitOptions{}, LoadOptions{LeafValidity: 3 * time.Hour})
	now := time.Now()
	a.now = func() time.Time { return now }
	first, err := a.Leaf("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		after time.Duration
		same  bool
	}{
		{time.Hour, true},
		{2*time.Hour - time.Second, true},
		{2*time.Hour + time.Second, false}, // past two thirds of 3 h
	}
	for _, s := range steps {
		a.now = func() time.Time { return now.Add(s.after) }
		got, err := a.Leaf("api.openai.com")
		if err != nil {
			t.Fatal(err)
		}
		if (got == first) != s.same {
			t.Errorf("after %v: same leaf = %v, want %v", s.after, got == first, s.same)
		}
		if !s.same && !got.Leaf.NotAfter.After(first.Leaf.NotAfter) {
			t.Errorf("re-minted leaf expires %v, not after the first (%v)", got.Leaf.NotAfter, first.Leaf.NotAfter)
		}
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	_, a := newTestCA(t, InitOptions{Validity: 2 * time.Hour}, LoadOptions{LeafValidity: 24 * time.Hour})
	c, err := a.Leaf("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.NotAfter.After(a.Certificate().NotAfter) {
		t.Errorf("leaf expires %v, after its CA (%v)", c.Leaf.NotAfter, a.Certificate().NotAfter)
	}
	if c.Leaf.NotBefore.Before(a.Certificate().NotBefore) {
		t.Errorf("leaf valid from %v, before its CA (%v)", c.Leaf.NotBefore, a.Certificate().NotBefore)
	}
	// Once the CA has expired, nothing is minted.
	a.now = func() time.Time { return time.Now().Add(3 * time.Hour) }
	if _, err := a.Leaf("api.openai.com"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Leaf after CA expiry: err = %v", err)
	}
}

func FuzzLeafName(f *testing.F) {
	for _, s := range []string{"api.openai.com", "API.OPENAI.COM.", "evil.com", "", "api.openai.com\x00", "xn--api-openai.com", " api.openai.com "} {
		f.Add(s)
	}
	_, a := newTestCA(f, InitOptions{}, LoadOptions{})
	f.Fuzz(func(t *testing.T, name string) {
		c, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			return
		}
		if NormalizeName(name) != DefaultHost {
			t.Fatalf("minted for %q", name)
		}
		if len(c.Leaf.DNSNames) != 1 || c.Leaf.DNSNames[0] != DefaultHost {
			t.Fatalf("leaf names %v", c.Leaf.DNSNames)
		}
	})
}

func FuzzParseCertPEM(f *testing.F) {
	_, a := newTestCA(f, InitOptions{}, LoadOptions{})
	f.Add(a.CertPEM())
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseCertPEM(data)
		if err == nil && c == nil {
			t.Fatal("nil certificate without error")
		}
	})
}

func FuzzValidHost(f *testing.F) {
	for _, s := range []string{"api.openai.com", "a-b.c", "-a.b", "1.2.3.4", "::1", "*.x", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if ValidHost(h) != nil {
			return
		}
		// An accepted host round-trips through normalization and is
		// usable as a DNS name constraint.
		if NormalizeName(h) != h {
			t.Fatalf("accepted %q, which normalizes differently", h)
		}
		if strings.ContainsAny(h, "*/: \x00") {
			t.Fatalf("accepted %q", h)
		}
	})
}
