package pgtest

import (
	"net"
	"strconv"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	s := Start(t)
	dial := func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("cluster not listening after Start: %v", err)
	}
	s.Stop()
	if err := dial(); err == nil {
		t.Fatal("cluster still listening after Stop")
	}
	s.Start()
	if err := dial(); err != nil {
		t.Fatalf("cluster not listening after restart: %v", err)
	}
}
