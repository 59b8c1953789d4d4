//go:build linux

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/ca"
	"github.com/sessctl/sessctl/internal/testutil"
	"github.com/sessctl/sessctl/store"
)

// The test network, on addresses that exist only inside the test's
// namespaces:
//
//	runner 10.251.0.2/30 ── 10.251.0.1/30 gateway 10.251.0.9/29 ── 10.251.0.10/29 (+ .11) upstream
//
// The runner's default route is the gateway, whose firewall redirects the
// runner's TCP 443 and 80 to sessctl's transparent listener (port 3129).
// The upstream serves api.openai.com and other.example (the passthrough
// host) with certificates from a CA that only sessctl and the passthrough
// client trust.
const (
	nsRunnerAddr   = "10.251.0.2/30"
	nsGatewayLeft  = "10.251.0.1/30"
	nsGatewayRight = "10.251.0.9/29"
	nsUpstreamAddr = "10.251.0.10/29"
	nsUpstreamAlt  = "10.251.0.11/29" // routed like the upstream, but not api.openai.com
	nsUpstreamIP   = "10.251.0.10"
	nsListenPort   = "3129"
)

// netns is the test's set of namespaces.
type netns struct {
	t                      *testing.T
	runner, gateway, upstr string
}

func (n *netns) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// exec runs a command in namespace ns and returns its output.
func (n *netns) exec(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + n.t.TempDir()} // no *_PROXY
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (n *netns) mustExec(ns string, args ...string) string {
	n.t.Helper()
	out, err := n.exec(ns, args...)
	if err != nil {
		n.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return out
}

// newNetns builds the namespaces, links, routes and hosts files, and
// removes them all when the test ends, however it ends.
func newNetns(t *testing.T) *netns {
	prefix := fmt.Sprintf("sct-%d", os.Getpid())
	n := &netns{t: t, runner: prefix + "-runner", gateway: prefix + "-gw", upstr: prefix + "-up"}
	_, statErr := os.Stat("/etc/netns")
	madeEtc := errors.Is(statErr, os.ErrNotExist)
	t.Cleanup(func() {
		for _, ns := range []string{n.runner, n.gateway, n.upstr} {
			exec.Command("ip", "netns", "del", ns).Run()
			os.RemoveAll(filepath.Join("/etc/netns", ns))
		}
		if madeEtc {
			os.Remove("/etc/netns") // only if empty
		}
	})
	hosts := map[string]string{
		n.runner:  nsUpstreamIP + " api.openai.com other.example blocked.example\n",
		n.gateway: nsUpstreamIP + " api.openai.com other.example\n",
		n.upstr:   "",
	}
	for ns, h := range hosts {
		n.ip("netns", "add", ns)
		n.ip("-n", ns, "link", "set", "lo", "up")
		dir := filepath.Join("/etc/netns", ns)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte("127.0.0.1 localhost\n"+h), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.ip("-n", n.runner, "link", "add", "eth0", "type", "veth", "peer", "name", "left", "netns", n.gateway)
	n.ip("-n", n.upstr, "link", "add", "eth0", "type", "veth", "peer", "name", "right", "netns", n.gateway)
	n.ip("-n", n.runner, "addr", "add", nsRunnerAddr, "dev", "eth0")
	n.ip("-n", n.gateway, "addr", "add", nsGatewayLeft, "dev", "left")
	n.ip("-n", n.gateway, "addr", "add", nsGatewayRight, "dev", "right")
	n.ip("-n", n.upstr, "addr", "add", nsUpstreamAddr, "dev", "eth0")
	n.ip("-n", n.upstr, "addr", "add", nsUpstreamAlt, "dev", "eth0")
	for _, l := range [][2]string{{n.runner, "eth0"}, {n.gateway, "left"}, {n.gateway, "right"}, {n.upstr, "eth0"}} {
		n.ip("-n", l[0], "link", "set", l[1], "up")
	}
	n.ip("-n", n.runner, "route", "add", "default", "via", "10.251.0.1")
	n.ip("-n", n.upstr, "route", "add", "default", "via", "10.251.0.9")
	n.mustExec(n.gateway, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	return n
}

// helper is the test binary re-executed in a namespace in one role.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *testutil.Buffer
}

// startHelper runs TestTransparentNetnsHelper in ns with env, and waits
// until it prints READY.
func (n *netns) startHelper(ns string, env ...string) *helper {
	t := n.t
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestTransparentNetnsHelper$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "SESSCTL_TEST_LOG=" + os.Getenv("SESSCTL_TEST_LOG")}, env...)
	h := &helper{cmd: cmd, stderr: &testutil.Buffer{}}
	cmd.Stderr = h.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("helper in %s, stderr:\n%s", ns, h.stderr.String())
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if sc.Text() == "READY" && !found {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("helper in %s exited before it was ready:\n%s", ns, h.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("helper in %s not ready after 60s:\n%s", ns, h.stderr.String())
	}
	return h
}

// stop closes the helper's stdin, which tells it to finish, and waits.
func (h *helper) stop(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("helper failed: %v\n%s", err, h.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("helper did not stop:\n%s", h.stderr.String())
	}
}

// TestTransparentNetns is transparent mode end to end: a runner namespace
// whose HTTPS is redirected by the gateway's firewall (installed by
// scripts/transparent-*.sh) to sessctl, a fake api.openai.com in an
// upstream namespace, and curl with no proxy settings.
func TestTransparentNetns(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("transparent end-to-end test: needs root to create network namespaces (ip netns)")
	}
	for _, tool := range []string{"ip", "iptables", "curl", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("transparent end-to-end test: %s not installed (needs iproute2, iptables, curl)", tool)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("transparent end-to-end test: ip netns unavailable: %v %s", err, out)
	}
	n := newNetns(t)
	dir := t.TempDir()
	upCA := filepath.Join(dir, "upstream-ca")
	if err := ca.Init(upCA, ca.InitOptions{Hosts: []string{"api.openai.com", "other.example"}}); err != nil {
		t.Fatal(err)
	}
	sessctlCA := filepath.Join(dir, "sessctl-ca.crt")
	recordsFile := filepath.Join(dir, "records.json")

	up := n.startHelper(n.upstr, "SESSCTL_NETNS_ROLE=upstream", "SESSCTL_NETNS_UPCA="+upCA)
	gw := n.startHelper(n.gateway, "SESSCTL_NETNS_ROLE=gateway", "SESSCTL_NETNS_UPCA="+upCA,
		"SESSCTL_NETNS_CA_OUT="+sessctlCA, "SESSCTL_NETNS_RECORDS="+recordsFile)

	scripts, err := filepath.Abs("../scripts")
	if err != nil {
		t.Fatal(err)
	}
	n.mustExec(n.gateway, "bash", filepath.Join(scripts, "transparent-iptables.sh"), "--port", nsListenPort, "--subnet", "10.251.0.0/30")

	curl := func(args ...string) (string, error) {
		return n.exec(n.runner, append([]string{"curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}"}, args...)...)
	}
	chat := []string{"--cacert", sessctlCA, "https://api.openai.com/v1/chat/completions",
		"-H", "Authorization: Bearer " + testRunnerToken, "-H", "Content-Type: application/json", "-d", chatBody}

	t.Run("intercepted", func(t *testing.T) {
		out, err := curl(chat...)
		if err != nil || !strings.HasSuffix(out, "\n200") || !strings.Contains(out, `"content":"hi"`) {
			t.Fatalf("curl through the redirect: %v\n%s", err, out)
		}
	})
	t.Run("passthrough is not decrypted", func(t *testing.T) {
		// curl trusts only the upstream's own CA: a MITM would fail.
		out, err := curl("--cacert", filepath.Join(upCA, "ca.crt"), "https://other.example/")
		if err != nil || !strings.Contains(out, "direct from the upstream") {
			t.Fatalf("curl to the passthrough host: %v\n%s", err, out)
		}
	})
	t.Run("other hosts refused", func(t *testing.T) {
		out, err := curl("--cacert", sessctlCA, "https://blocked.example/")
		if err == nil {
			t.Fatalf("curl to a host outside the policy succeeded:\n%s", out)
		}
	})
	t.Run("destination not of the name", func(t *testing.T) {
		out, err := curl(append([]string{"--resolve", "api.openai.com:443:10.251.0.11"}, chat...)...)
		if err == nil {
			t.Fatalf("curl with SNI api.openai.com to another address succeeded:\n%s", out)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		out, err := curl("http://api.openai.com/v1/models")
		if err != nil || !strings.HasSuffix(out, "\n403") || !strings.Contains(out, "sessctl_forbidden") {
			t.Fatalf("plain HTTP: %v\n%s", err, out)
		}
	})
	t.Run("QUIC rejected", func(t *testing.T) {
		n.exec(n.runner, "bash", "-c", "echo quic > /dev/udp/"+nsUpstreamIP+"/443")
		rules := n.mustExec(n.gateway, "iptables", "-t", "filter", "-L", "SESSCTL_FWD", "-v", "-x", "-n")
		if !matchedUDP443(rules) {
			t.Fatalf("the UDP 443 reject rule matched nothing:\n%s", rules)
		}
	})
	t.Run("self-loop refused", func(t *testing.T) {
		// A firewall that forgot to exempt sessctl's own traffic: its
		// upstream connections come back to it.
		loop := []string{"iptables", "-w", "-t", "nat", "-I", "OUTPUT", "-p", "tcp", "--dport", "443", "-j", "REDIRECT", "--to-ports", nsListenPort}
		n.mustExec(n.gateway, loop...)
		defer func() {
			loop[4] = "-D"
			n.mustExec(n.gateway, loop...)
		}()
		out, err := curl("--cacert", filepath.Join(upCA, "ca.crt"), "https://other.example/")
		if err == nil && strings.Contains(out, "direct from the upstream") {
			t.Fatalf("a looped connection reached the upstream:\n%s", out)
		}
	})
	if _, err := exec.LookPath("nft"); err == nil {
		t.Run("nftables script", func(t *testing.T) {
			n.mustExec(n.gateway, "bash", filepath.Join(scripts, "transparent-iptables.sh"), "--remove")
			if out, err := curl(chat...); err == nil && strings.HasSuffix(out, "\n200") {
				t.Fatalf("without the firewall the runner still went through sessctl?\n%s", out)
			}
			n.mustExec(n.gateway, "bash", filepath.Join(scripts, "transparent-nftables.sh"), "--port", nsListenPort, "--subnet", "10.251.0.0/30")
			n.mustExec(n.gateway, "bash", filepath.Join(scripts, "transparent-nftables.sh"), "--port", nsListenPort, "--subnet", "10.251.0.0/30")
			out, err := curl(chat...)
			if err != nil || !strings.HasSuffix(out, "\n200") {
				t.Fatalf("curl through the nftables redirect: %v\n%s", err, out)
			}
			if out, err := curl("--cacert", sessctlCA, "https://blocked.example/"); err == nil {
				t.Fatalf("curl to a host outside the policy succeeded:\n%s", out)
			}
			n.mustExec(n.gateway, "bash", filepath.Join(scripts, "transparent-nftables.sh"), "--remove")
		})
	}

	gw.stop(t)
	up.stop(t)
	var recs []*store.Record
	if err := json.Unmarshal(readFile(t, recordsFile), &recs); err != nil {
		t.Fatal(err)
	}
	find := func(kind store.Kind, host, reason string) *store.Record {
		for _, r := range recs {
			if r.Kind == kind && r.Host == host && strings.Contains(r.Reason, reason) && r.Conn.Mode == "transparent" {
				return r
			}
		}
		return nil
	}
	if r := find(store.KindExchange, "api.openai.com", ""); r == nil || r.Outcome != store.OutcomeForwarded || r.Identity.Runner != "ci-1" {
		t.Errorf("no forwarded transparent exchange recorded: %+v", r)
	}
	if r := find(store.KindConnect, "other.example", ""); r == nil || r.Outcome != store.OutcomeSpliced || r.Extra["target"] != nsUpstreamIP+":443" {
		t.Errorf("no spliced connect record to the original destination: %+v", r)
	}
	for _, want := range []struct{ host, reason string }{
		{"blocked.example", "not allowed"},
		{"api.openai.com", "10.251.0.11 is not an address of api.openai.com"},
		{"api.openai.com", "plain HTTP to api.openai.com is refused"},
		{"", "redirect loop"},
	} {
		if find(store.KindRefused, want.host, want.reason) == nil {
			t.Errorf("no refusal recorded for %s %q", want.host, want.reason)
		}
	}
	if t.Failed() {
		b, _ := json.MarshalIndent(recs, "", "  ")
		t.Logf("records:\n%s", b)
	}
}

// matchedUDP443 reports whether the UDP 443 REJECT rule of an
// "iptables -L -v -x -n" listing counted a packet.
func matchedUDP443(listing string) bool {
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] != "0" && f[2] == "REJECT" && strings.Contains(line, "udp dpt:443") {
			return true
		}
	}
	return false
}

// TestTransparentNetnsHelper is TestTransparentNetns's helper process: the
// fake upstream or sessctl's gateway, run in a namespace.
func TestTransparentNetnsHelper(t *testing.T) {
	switch os.Getenv("SESSCTL_NETNS_ROLE") {
	case "":
		t.Skip("helper process of TestTransparentNetns")
	case "upstream":
		netnsUpstream(t)
	case "gateway":
		netnsGateway(t)
	}
}

// netnsUpstream serves api.openai.com (requiring the real key) and
// other.example on port 443 until stdin closes.
func netnsUpstream(t *testing.T) {
	authority, err := ca.Load(os.Getenv("SESSCTL_NETNS_UPCA"), ca.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", ":443", &tls.Config{GetCertificate: authority.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hostOnly(r.Host) != "api.openai.com" {
			io.WriteString(w, "direct from the upstream\n")
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+testRealKey {
			http.Error(w, "wrong key", http.StatusUnauthorized)
			return
		}
		okJSON(w, r)
	})}
	go srv.Serve(l)
	defer srv.Close()
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
}

// netnsGateway runs sessctl's transparent listener until stdin closes,
// then writes every record as JSON.
func netnsGateway(t *testing.T) {
	tr, dial, upTLS, err := NewTransport(UpstreamOptions{CAFile: filepath.Join(os.Getenv("SESSCTL_NETNS_UPCA"), "ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	e := newEnv(t, okJSON, func(o *Options) {
		// The real upstream path: resolve the name (this namespace's
		// /etc/hosts) and verify against the upstream's CA.
		o.Upstream, o.UpstreamDial, o.UpstreamTLS = tr, dial, upTLS
		o.PassthroughDial = nil // passthrough dials the real destination
	})
	if err := os.WriteFile(os.Getenv("SESSCTL_NETNS_CA_OUT"), e.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// Dual-stack, so that redirected IPv4 arrives v4-mapped on an IPv6
	// socket, as with transparent_listen ":3129".
	l, err := net.Listen("tcp", ":"+nsListenPort)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.proxy.ServeTransparent(ctx, l, TransparentOptions{}) }()
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeTransparent: %v", err)
	}
	b, err := json.Marshal(e.records())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("SESSCTL_NETNS_RECORDS"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
