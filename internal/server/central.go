package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sessctl/sessctl/central"
	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/store"
)

// fleet is serve's link to the fleet's PostgreSQL (central_dsn); its
// methods do nothing when central_dsn is not set.
type fleet struct{ r *central.Replica }

// startFleet starts shipping the log when central_dsn is set.
func startFleet(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) (*fleet, error) {
	if cfg.CentralDSN == "" {
		return &fleet{}, nil
	}
	r, err := central.StartReplica(ctx, cfg.CentralDSN, st, log)
	if err != nil {
		return nil, err
	}
	return &fleet{r}, nil
}

func (f *fleet) close() {
	if f.r != nil {
		f.r.Close()
	}
}

// shipped is the retention limit: nil (none) without central_dsn.
func (f *fleet) shipped() func() uint64 {
	if f.r == nil {
		return nil
	}
	return f.r.Shipper.Shipped
}

func (f *fleet) healthDetail() map[string]any {
	if f.r == nil {
		return map[string]any{}
	}
	return f.r.HealthDetail()
}

// metrics adds the shipping metrics to the proxy's.
func (f *fleet) metrics(proxy func(io.Writer) error) func(io.Writer) error {
	if f.r == nil {
		return proxy
	}
	return func(w io.Writer) error {
		if err := proxy(w); err != nil {
			return err
		}
		return f.r.WritePrometheus(w)
	}
}

// fleetSessionKey loads the key that signs session tokens: session_key_file,
// which a fleet's replicas share and which must exist (a key made here
// would be this replica's alone), or DATA_DIR/session.key, created on
// first run.
func fleetSessionKey(cfg *config.Config) ([]byte, error) {
	if cfg.SessionKeyFile == "" {
		return sessionKey(filepath.Join(cfg.DataDir, "session.key"))
	}
	if _, err := os.Stat(cfg.SessionKeyFile); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("session_key_file %s does not exist: create it once (head -c 32 /dev/urandom > FILE; chmod 600 FILE) and mount it on every replica", cfg.SessionKeyFile)
	}
	return sessionKey(cfg.SessionKeyFile)
}
