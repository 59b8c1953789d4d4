//go:build linux

package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/
// ip6_tables.h, which x/sys/unix does not define (it equals SO_ORIGINAL_DST).
const ip6tSOOriginalDst = 80

// originalDst returns where a connection that the firewall redirected
// (iptables/nftables REDIRECT or DNAT) was headed before the redirect, from
// the conntrack entry: SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for
// IPv6. It fails when conntrack knows nothing of the connection.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	remote, err := addrPort(c.RemoteAddr())
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		if remote.Addr().Unmap().Is4() {
			// struct sockaddr_in (16 bytes) read through the 20-byte
			// IPv6Mreq: family, port (big endian), address.
			var m *unix.IPv6Mreq
			m, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if serr == nil {
				b := m.Multiaddr
				dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
			}
			return
		}
		// struct sockaddr_in6 (28 bytes) read through IPv6MTUInfo.
		var m *unix.IPv6MTUInfo
		m, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst)
		if serr == nil {
			port := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, m.Addr.Port))
			dst = netip.AddrPortFrom(netip.AddrFrom16(m.Addr.Addr), port)
		}
	})
	if cerr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", cerr)
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: getsockopt: %w", serr)
	}
	return dst, nil
}

// errNoSocket means no socket of this network namespace has the asked-for
// addresses.
var errNoSocket = errors.New("no such socket")

// socketUID returns the owner (uid) of this host's TCP socket whose local
// address is local and whose peer is remote, asking the kernel with one
// sock_diag (NETLINK_SOCK_DIAG) exact lookup. It returns errNoSocket if
// there is none: the connection comes from another host or namespace.
func socketUID(local, remote netip.AddrPort) (uint32, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	family := byte(unix.AF_INET6)
	if local.Addr().Is4() && remote.Addr().Is4() {
		family = unix.AF_INET
	}
	uid, err := sockDiag(family, local, remote)
	if errors.Is(err, errNoSocket) && family == unix.AF_INET {
		// An IPv6 socket may carry the IPv4 connection (v4-mapped).
		uid, err = sockDiag(unix.AF_INET6, local, remote)
	}
	return uid, err
}

func sockDiag(family byte, local, remote netip.AddrPort) (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	// struct nlmsghdr followed by struct inet_diag_req_v2.
	const hdrLen, reqLen = unix.NLMSG_HDRLEN, 56
	req := make([]byte, hdrLen+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // seq
	r := req[hdrLen:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // all states
	id := r[8:]                     // struct inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], local.Port())
	binary.BigEndian.PutUint16(id[2:], remote.Port())
	putDiagAddr(id[4:20], local.Addr(), family)
	putDiagAddr(id[20:36], remote.Addr(), family)
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag: send: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: receive: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				return 0, errors.New("sock_diag: short error message")
			}
			switch e := -int32(ne.Uint32(m.Data)); {
			case e == 0:
				continue
			case syscall.Errno(e) == unix.ENOENT:
				return 0, errNoSocket
			default:
				return 0, fmt.Errorf("sock_diag: %w", syscall.Errno(e))
			}
		case unix.SOCK_DIAG_BY_FAMILY:
			// struct inet_diag_msg: family, state, timer, retrans, sockid
			// (48 bytes), expires, rqueue, wqueue, uid, inode.
			if len(m.Data) < 72 {
				return 0, errors.New("sock_diag: short answer")
			}
			if m.Data[1] == 10 { // TCP_LISTEN: not a connection
				return 0, errNoSocket
			}
			return ne.Uint32(m.Data[64:]), nil
		}
	}
	return 0, errNoSocket
}

// putDiagAddr writes a in the 16 bytes of an inet_diag_sockid address.
func putDiagAddr(dst []byte, a netip.Addr, family byte) {
	if family == unix.AF_INET {
		b := a.As4()
		copy(dst, b[:])
		return
	}
	b := a.As16()
	copy(dst, b[:])
}
