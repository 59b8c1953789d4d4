package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestDiskReserveWarns: with the log's volume below disk_reserve (a
// reserve larger than any disk), /healthz still answers 200 but warns,
// without the path for an anonymous caller, and /metrics says so.
func TestDiskReserveWarns(t *testing.T) {
	cfg := testConfig(t)
	cfg.DiskReserve = 1 << 62
	s, _ := start(t, cfg, nil)
	if !s.disk.Low() {
		t.Skip("free space not measurable here")
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.adminLn.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("/healthz")
	if status != 200 || !strings.Contains(body, "below its free space reserve") || strings.Contains(body, cfg.DataDir) {
		t.Fatalf("/healthz: %d %s", status, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{"sessctl_disk_below_reserve 1", "sessctl_disk_free_bytes ", "sessctl_buffered_bytes 0", "sessctl_open_connections "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
}
