package clienthello

import "net"

// replayConn is a net.Conn whose first reads return bytes already read
// from it.
type replayConn struct {
	net.Conn
	peeked []byte
}

func newReplayConn(c net.Conn, peeked []byte) net.Conn {
	if len(peeked) == 0 {
		return c
	}
	return &replayConn{Conn: c, peeked: peeked}
}

// Read returns the peeked bytes first, then reads from the connection.
func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection if it supports it (TCP does), so
// that a splice can end one direction and let the other finish.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
