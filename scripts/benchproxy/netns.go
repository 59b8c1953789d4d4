package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// The stand-in's network namespace, as the issue measured ("the fake
// upstream in a network namespace"): every path reaches it over a veth
// pair, through the kernel's full IP stack and a namespace crossing, not
// over loopback.
//
//	host: bpx<pid>h 10.201.X.1/30 ── veth ── eth0 10.201.X.2/30 in namespace benchproxy-<pid>
//
// Only those two addresses are used: the namespace has no other link and
// no route out, and nothing else is addressed. X is picked so that no
// interface of the host already uses 10.201.X.0/30.

// netnsPrefix names the harness's namespaces: benchproxy-<pid>.
const netnsPrefix = "benchproxy-"

// netns is one namespace with a veth pair to the host.
type netns struct {
	// Name is the namespace; HostDev the host's end of the veth pair.
	Name, HostDev string
	// HostIP and IP are the addresses of the host's end and of the
	// namespace's end (eth0).
	HostIP, IP string
}

// netnsUnavailable returns why namespaces cannot be used here, or nil.
func netnsUnavailable() error {
	if os.Geteuid() != 0 {
		return errors.New("not root: creating a network namespace needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip (iproute2) not installed")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns unavailable: %v %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipCmd runs ip with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setupNetns creates the namespace benchproxy-<pid> and its veth pair.
// On error, what was created is removed again.
func setupNetns() (_ *netns, err error) {
	pid := os.Getpid()
	octet, err := freeOctet(pid)
	if err != nil {
		return nil, err
	}
	n := &netns{
		Name:    netnsPrefix + strconv.Itoa(pid),
		HostDev: "bpx" + strconv.Itoa(pid) + "h",
		HostIP:  fmt.Sprintf("10.201.%d.1", octet),
		IP:      fmt.Sprintf("10.201.%d.2", octet),
	}
	if len(n.HostDev) > 15 {
		n.HostDev = n.HostDev[len(n.HostDev)-15:]
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	steps := [][]string{
		{"netns", "add", n.Name},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"link", "add", n.HostDev, "type", "veth", "peer", "name", "eth0", "netns", n.Name},
		{"addr", "add", n.HostIP + "/30", "dev", n.HostDev},
		{"link", "set", n.HostDev, "up"},
		{"-n", n.Name, "addr", "add", n.IP + "/30", "dev", "eth0"},
		{"-n", n.Name, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return nil, fmt.Errorf("netns: %w", err)
		}
	}
	return n, nil
}

// Close removes the veth pair and the namespace. Processes still running
// in the namespace must have been stopped first.
func (n *netns) Close() error {
	// Deleting either end of a veth pair deletes both; the namespace's
	// end goes with the namespace anyway.
	errLink := ipCmd("link", "del", n.HostDev)
	errNS := ipCmd("netns", "del", n.Name)
	if errNS != nil {
		return fmt.Errorf("netns: %w", errNS)
	}
	if errLink != nil && linkExists(n.HostDev) {
		return fmt.Errorf("netns: %w", errLink)
	}
	return nil
}

// Command returns cmd run inside the namespace (ip netns exec, which
// execs the command in place: its PID is the command's).
func (n *netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

func linkExists(dev string) bool {
	return exec.Command("ip", "link", "show", "dev", dev).Run() == nil
}

// freeOctet picks X for 10.201.X.0/30, starting from pid, such that no
// address of the host is in 10.201.X.0/24.
func freeOctet(pid int) (int, error) {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("netns: ip addr show: %w", err)
	}
	used := string(out)
	for k := 0; k < 250; k++ {
		x := (pid+k)%250 + 1
		if !strings.Contains(used, fmt.Sprintf(" 10.201.%d.", x)) {
			return x, nil
		}
	}
	return 0, errors.New("netns: every 10.201.X.0/24 is in use on this host")
}

var staleName = regexp.MustCompile(`^` + netnsPrefix + `([0-9]+)\b`)

// cleanStaleNetns removes the namespaces (and veth pairs) of earlier runs
// of this harness that were killed before they could (benchproxy-<pid>
// whose process is gone). Others' namespaces are left alone.
func cleanStaleNetns(log *slog.Logger) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := staleName.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // a run still going
		}
		n := &netns{Name: netnsPrefix + m[1], HostDev: "bpx" + m[1] + "h"}
		if len(n.HostDev) > 15 {
			n.HostDev = n.HostDev[len(n.HostDev)-15:]
		}
		err := n.Close()
		log.Info("removed the namespace of an interrupted run", "netns", n.Name, "err", err)
	}
}
