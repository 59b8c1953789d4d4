package central

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is a fleet's PostgreSQL database: a connection pool that connects
// lazily, and the schema, migrated on first use.
type DB struct {
	// Pool is the connection pool; use it after Ready.
	Pool *pgxpool.Pool

	mu       sync.Mutex
	migrated bool
}

// Open parses dsn (a PostgreSQL connection string or URL) and returns a
// pool that has not connected yet: a replica starts, serves and records
// while PostgreSQL is down. Errors name no password.
func Open(ctx context.Context, dsn string) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("central: empty DSN")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors do not echo the connection string.
		return nil, fmt.Errorf("central: central_dsn: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 10*time.Second {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "sessctl"
	}
	cfg.HealthCheckPeriod = 10 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("central: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Ready migrates the schema the first time it succeeds (see [Migrate]);
// later calls return nil at once.
func (db *DB) Ready(ctx context.Context) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.migrated {
		return nil
	}
	if err := Migrate(ctx, db.Pool); err != nil {
		return err
	}
	db.migrated = true
	return nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }
