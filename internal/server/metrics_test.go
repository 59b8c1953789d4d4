package server

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/internal/testutil"
)

// scrapeValue returns the value of the first /metrics line that starts with
// series (a name, or a name with labels), or "" if there is none.
func scrapeValue(t *testing.T, s *server, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.adminLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestAdminMetricsWired checks what serve wires into the metrics: the
// log's gauges, the store's commit hook, and the process collectors, on
// the admin listener.
func TestAdminMetricsWired(t *testing.T) {
	cfg := testConfig(t)
	now := time.Now()
	seed(t, cfg, exchange("old", now.Add(-72*time.Hour)), exchange("recent", now.Add(-time.Hour)))
	cfg.Retention.Bodies = config.Duration(24 * time.Hour)
	s, _ := start(t, cfg, nil)
	// The prune of "old" is one commit through the store's hook.
	testutil.WaitFor(t, 0, "the prune's commit to be counted", func() bool {
		n, _ := strconv.Atoi(scrapeValue(t, s, "sessctl_store_commit_seconds_count"))
		return n >= 1
	})
	records, err := strconv.ParseFloat(scrapeValue(t, s, "sessctl_log_records"), 64)
	if err != nil || uint64(records) != s.store.Stats().Records || records < 4 {
		t.Errorf("sessctl_log_records = %v (%v), the log has %d", records, err, s.store.Stats().Records)
	}
	for series, want := range map[string]string{
		"sessctl_store_healthy":      "1",
		"sessctl_approvals_held":     "0",
		"sessctl_inflight_exchanges": "0",
	} {
		if got := scrapeValue(t, s, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	for _, series := range []string{"sessctl_log_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if v, err := strconv.ParseFloat(scrapeValue(t, s, series), 64); err != nil || v <= 0 {
			t.Errorf("%s = %v, %v", series, v, err)
		}
	}
}
