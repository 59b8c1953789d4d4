package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/web"
)

// DefaultConsoleListen is where `sessctl console` listens by default:
// loopback only.
const DefaultConsoleListen = "127.0.0.1:9091"

// RunConsole serves the admin UI and API over the fleet's PostgreSQL at
// dsn, without a proxy, on listen, until ctx is done: the fleet's
// sessions, and the shared approval inbox (a decision is handed to the
// replica holding the request). The admin tokens are cfg's (admin_tokens
// and admin_tokens_file), as on the replicas; none is created. The schema
// is migrated if needed.
func RunConsole(ctx context.Context, cfg *config.Config, dsn, listen string, log *slog.Logger) error {
	admins, _, err := loadTokens(cfg.AdminTokensFile, cfg.AdminTokens, "admin", false)
	if err != nil {
		return err
	}
	if len(admins) == 0 {
		return errors.New("no admin tokens: give the replicas' config (--config) or admin tokens file (--admin_tokens_file)")
	}
	fleet, err := central.OpenFleet(ctx, dsn)
	if err != nil {
		return err
	}
	defer fleet.Close()
	if err := central.Migrate(ctx, fleet.Pool()); err != nil {
		return err
	}
	inbox, err := central.NewInbox(fleet.Pool(), central.InboxOptions{Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inbox.Run(ctx)
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if !isLoopback(l.Addr()) {
		log.Warn("console is not on loopback: keep it behind TLS and a firewall", "addr", l.Addr().String())
	}
	srv := &http.Server{
		Handler: web.NewHandler(web.Options{
			Health: func() error {
				hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				if err := fleet.Pool().Ping(hctx); err != nil {
					return fmt.Errorf("PostgreSQL unreachable: %w", err)
				}
				return nil
			},
			Logger: log, Sessions: fleet, Approvals: inbox, AdminTokens: admins,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Info("sessctl console serving", "listen", l.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
