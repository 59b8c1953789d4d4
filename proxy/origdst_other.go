//go:build !linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// originalDst is only known on Linux (SO_ORIGINAL_DST); elsewhere the
// transparent listener relies on the connection's local address, which is
// the original destination under TPROXY-like interception.
func originalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, fmt.Errorf("original destination: %w", errors.ErrUnsupported)
}

var errNoSocket = errors.New("no such socket")

// socketUID is only implemented on Linux; elsewhere no self-loop is
// detected by socket owner.
func socketUID(local, remote netip.AddrPort) (uint32, error) {
	return 0, errNoSocket
}
