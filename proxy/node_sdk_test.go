package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// nodeSDKDir holds the Node end-to-end client and its pinned dependencies.
const nodeSDKDir = "testdata/node"

// nodeSDK returns the node binary, or skips the test when node or the
// installed dependencies are missing.
func nodeSDK(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: skipping the official Node SDK end-to-end test")
	}
	if _, err := os.Stat(filepath.Join(nodeSDKDir, "node_modules", "openai", "package.json")); err != nil {
		t.Skip("proxy/testdata/node/node_modules is absent: run `npm ci --prefix proxy/testdata/node` to enable the Node SDK end-to-end test")
	}
	return node
}

// TestNodeSDKResponsesWebSocket runs the official OpenAI Node SDK's
// Responses WebSocket client (ResponsesWS, on the ws package) through the
// real proxy by HTTPS_PROXY, trusting sessctl's CA by NODE_EXTRA_CA_CERTS,
// as a CI job would.
func TestNodeSDKResponsesWebSocket(t *testing.T) {
	node := nodeSDK(t)
	const secret = "AKIAIOSFODNN7EXAMPLQ" // split across two deltas by wsUpstream
	for _, tc := range []struct {
		name    string
		deflate bool // offer permessage-deflate
	}{
		{"sdk-defaults", false},
		{"permessage-deflate", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth := make(chan string, 1)
			e := newEnv(t, wsUpstream(t, auth))

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "responses_ws.mjs")
			cmd.Dir = nodeSDKDir
			// Only what the script needs: no ambient proxy, base URL or
			// Node options from the developer's shell.
			cmd.Env = []string{
				"PATH=" + os.Getenv("PATH"),
				"HOME=" + t.TempDir(),
				"OPENAI_API_KEY=" + testRunnerToken,
				"HTTPS_PROXY=" + e.proxyURL.String(),
				"NODE_EXTRA_CA_CERTS=" + e.caFile(),
				"SESSCTL_WS_DEFLATE=" + strconv.FormatBool(tc.deflate),
				"SESSCTL_WS_TIMEOUT_MS=10000",
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("node responses_ws.mjs: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
			}

			// Each side negotiates its own framing: the SDK's compression
			// choice holds through the proxy.
			if got := strings.Contains(stderr.String(), "extensions: permessage-deflate"); got != tc.deflate {
				t.Errorf("permessage-deflate negotiated = %v, want %v (stderr %q)", got, tc.deflate, stderr.String())
			}

			// The events arrived, in order, as JSON the SDK parsed.
			var types []string
			var deltas strings.Builder
			var doneText string
			sc := bufio.NewScanner(&stdout)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var ev struct {
					Type  string `json:"type"`
					Delta string `json:"delta"`
					Text  string `json:"text"`
				}
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Fatalf("stdout line %q: %v", sc.Text(), err)
				}
				types = append(types, ev.Type)
				switch ev.Type {
				case "response.output_text.delta":
					deltas.WriteString(ev.Delta)
				case "response.output_text.done":
					doneText = ev.Text
				}
			}
			want := []string{
				"response.created",
				"response.output_text.delta", "response.output_text.delta",
				"response.output_text.done",
				"response.completed",
			}
			if !slices.Equal(types, want) {
				t.Fatalf("events received by the SDK = %q, want %q", types, want)
			}

			// The secret split across deltas was masked in what Node saw.
			if strings.Contains(stdout.String(), secret) || strings.Contains(stderr.String(), secret) {
				t.Error("the secret split across deltas reached the Node SDK unmasked")
			}
			const masked = "key: [MASKED:aws-access-key] done"
			if deltas.String() != masked {
				t.Errorf("deltas joined = %q, want %q", deltas.String(), masked)
			}
			if doneText != masked {
				t.Errorf("output_text.done text = %q, want %q", doneText, masked)
			}

			// The upstream saw the real key on the handshake, never the
			// runner token.
			select {
			case got := <-auth:
				if got != "Bearer "+testRealKey {
					t.Errorf("upstream handshake Authorization = %.12q..., want the real key", got)
				}
			default:
				t.Error("the upstream saw no WebSocket handshake")
			}

			// One forwarded websocket record for the response.create,
			// attributed to the runner, with its deltas and the mask hit.
			var rec *store.Record
			testutil.WaitFor(t, 0, "the response.create websocket record", func() bool {
				for _, r := range e.records() {
					if r.Conn.Transport == "websocket" && r.Extra["ws_event"] == "response.create" {
						rec = r
						return true
					}
				}
				return false
			})
			if rec.Outcome != store.OutcomeForwarded || rec.Identity.Runner != "ci-1" || rec.Path != "/v1/responses" {
				t.Errorf("websocket record: outcome %q, runner %q, path %q", rec.Outcome, rec.Identity.Runner, rec.Path)
			}
			if len(rec.Deltas) < 2 || !slices.ContainsFunc(rec.Rules, func(h store.RuleHit) bool { return h.Name == "aws-access-key" }) {
				t.Errorf("websocket record lacks its deltas or the mask hit: deltas %d, rules %+v", len(rec.Deltas), rec.Rules)
			}
			assertNoSecretInDB(t, e, secret, testRealKey, testRunnerToken)
		})
	}
}
