package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/sessctl/sessctl/store"
)

// splice tunnels a passthrough connection byte for byte to target, without
// decryption, and records a connect record with the byte counts and
// duration.
func (s *Server) splice(ctx context.Context, client net.Conn, t *tunnel, target string) {
	defer client.Close()
	rec := &store.Record{
		Kind: store.KindConnect, SessionID: uuid.Must(uuid.NewV7()).String(),
		Start: time.Now().UTC(), Conn: t.conn(), Host: t.host, Method: "CONNECT",
		Extra: map[string]string{"target": target},
	}
	rec.Conn.Transport = "tcp"
	if err := s.opt.Store.Healthy(); err != nil {
		s.log.Error("refusing passthrough: store cannot record", "err", err)
		return
	}
	up, err := s.dial(ctx, "tcp", target)
	if err != nil {
		rec.Outcome, rec.Reason, rec.End = store.OutcomeUpstreamError, "dial failed", time.Now().UTC()
		s.appendConnect(ctx, rec)
		return
	}
	defer up.Close()
	// Closing both ends stops the copies when the server closes.
	stop := context.AfterFunc(s.ctx, func() { client.Close(); up.Close() })
	defer stop()
	var in, out, last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyHalf(up, client, &out, &last, s.opt.IdleTimeout) }()
	go func() { defer wg.Done(); copyHalf(client, up, &in, &last, s.opt.IdleTimeout) }()
	wg.Wait()
	rec.Outcome, rec.End = store.OutcomeSpliced, time.Now().UTC()
	rec.Extra["bytes_to_upstream"] = strconv.FormatInt(out.Load(), 10)
	rec.Extra["bytes_from_upstream"] = strconv.FormatInt(in.Load(), 10)
	s.appendConnect(ctx, rec)
}

func (s *Server) appendConnect(ctx context.Context, rec *store.Record) {
	s.opt.Metrics.passthrough.Inc()
	if _, err := s.opt.Store.Append(context.WithoutCancel(ctx), rec); err != nil {
		s.log.Error("cannot record passthrough", "host", rec.Host, "err", err)
		s.opt.Metrics.recordErrors.Inc()
	}
}

// copyHalf copies src to dst, counting bytes, then half-closes dst so the
// other direction can finish. The tunnel ends when neither direction has
// moved for idle (last is shared by both directions).
func copyHalf(dst, src net.Conn, n, last *atomic.Int64, idle time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		k, err := src.Read(buf)
		if k > 0 {
			last.Store(time.Now().UnixNano())
			dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				break
			}
			n.Add(int64(k))
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < idle {
			continue // quiet this way, busy the other
		}
		if err != nil {
			break
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}
