package connlimit

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := New(3, 2)
	var mu sync.Mutex
	var refused []Over
	l := lim.Listener(inner, func(c net.Conn, why Over) {
		mu.Lock()
		refused = append(refused, why)
		mu.Unlock()
		io.WriteString(c, "refused\n")
	})
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(src string) (net.Conn, string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		b := make([]byte, 16)
		n, _ := c.Read(b)
		return c, string(b[:n])
	}
	tests := []struct {
		src, want string
		accept    bool
	}{
		{"127.0.0.1", "", true},
		{"127.0.0.1", "", true},
		{"127.0.0.1", "refused\n", false}, // per source
		{"127.0.0.2", "", true},
		{"127.0.0.3", "refused\n", false}, // total
	}
	var served []net.Conn
	for i, tt := range tests {
		_, got := dial(tt.src)
		if got != tt.want {
			t.Fatalf("connection %d from %s: read %q, want %q", i, tt.src, got, tt.want)
		}
		if tt.accept {
			served = append(served, <-accepted)
		}
	}
	if lim.Open() != 3 || len(refused) != 2 || refused[0] != Source || refused[1] != Total {
		t.Fatalf("open %d, refused %v", lim.Open(), refused)
	}
	// Keeps *net.TCPConn's methods.
	if _, ok := served[0].(interface{ CloseWrite() error }); !ok {
		t.Fatal("accepted connection lost CloseWrite")
	}
	served[0].Close()
	served[0].Close() // twice: released once
	if lim.Open() != 2 {
		t.Fatalf("open %d after one close", lim.Open())
	}
	if _, got := dial("127.0.0.1"); got != "" {
		t.Fatalf("after a close: %q", got)
	}
	<-accepted
}
