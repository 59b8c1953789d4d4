package admin

import (
	"strings"
	"testing"
)

func TestNewClient(t *testing.T) {
	for _, tc := range []struct {
		url, token   string
		ok, insecure bool
	}{
		{"http://127.0.0.1:9090", "t", true, false},
		{"http://localhost:9090/", "t", true, false},
		{"http://[::1]:9090", "t", true, false},
		{"https://admin.example:9090", "t", true, false},
		{"http://admin.example:9090", "t", true, true},
		{"http://10.0.0.5:9090", "t", true, true},
		{"http://127.0.0.1:9090", " ", false, false},
		{"ftp://127.0.0.1", "t", false, false},
		{"127.0.0.1:9090", "t", false, false},
		{"http://user:pw@127.0.0.1:9090", "t", false, false},
		{"http://127.0.0.1:9090/?token=x", "t", false, false},
	} {
		c, err := NewClient(tc.url, tc.token, nil)
		if (err == nil) != tc.ok {
			t.Errorf("NewClient(%q, %q): %v", tc.url, tc.token, err)
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error shows the password: %v", err)
			}
			continue
		}
		if c.Insecure() != tc.insecure {
			t.Errorf("%s: Insecure() = %v", tc.url, c.Insecure())
		}
	}
}

func TestSetPageSize(t *testing.T) {
	c, err := NewClient("http://127.0.0.1:9090", "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ set, want int }{{0, MaxPageSize}, {2, 2}, {MaxPageSize + 1, 2}, {-1, 2}, {MaxPageSize, MaxPageSize}} {
		c.SetPageSize(tc.set)
		if c.pageSize != tc.want {
			t.Errorf("SetPageSize(%d): page size %d, want %d", tc.set, c.pageSize, tc.want)
		}
	}
}
