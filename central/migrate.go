package central

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered schema change, from migrations/NNNN_name.sql.
type Migration struct {
	Version int    // NNNN
	Name    string // the file name without the number and ".sql"
	SQL     string
}

// migrationName is the form of a migration file name.
var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

// migrationLock is the advisory lock key that serialises Migrate across
// replicas starting at once ("sessctl" in ASCII).
const migrationLock = 0x73657373_63746c

// Migrations returns the embedded migrations in version order. The
// versions must be 1, 2, 3, … without gaps or duplicates.
func Migrations() ([]Migration, error) { return readMigrations(migrationFiles, "migrations") }

func readMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("central: migrations: %w", err)
	}
	var ms []Migration
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("central: migrations: %s is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("central: migrations: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: m[2], SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("central: migrations: expected version %04d, found %04d_%s.sql (versions must run 1, 2, 3, … without gaps or duplicates)", i+1, m.Version, m.Name)
		}
	}
	return ms, nil
}

// ErrSchemaTooNew is returned by Migrate when the database holds a schema
// version this binary does not know: a newer sessctl migrated it.
var ErrSchemaTooNew = errors.New("central: the database schema is newer than this sessctl")

// Migrate brings the schema up to date: it applies, in one transaction,
// each embedded migration the database has not recorded in
// sessctl_schema_migrations. Replicas starting at once serialise on an
// advisory lock. It refuses (ErrSchemaTooNew) a database whose schema is
// newer than the newest embedded migration, and a database whose recorded
// migrations have other names than the embedded ones.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	return migrate(ctx, pool, ms)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, ms []Migration) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
			return fmt.Errorf("central: migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS sessctl_schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
			return fmt.Errorf("central: migrate: %w", err)
		}
		rows, err := tx.Query(ctx, "SELECT version, name FROM sessctl_schema_migrations ORDER BY version")
		if err != nil {
			return fmt.Errorf("central: migrate: %w", err)
		}
		applied := map[int]string{}
		newest := 0
		for rows.Next() {
			var v int
			var name string
			if err := rows.Scan(&v, &name); err != nil {
				rows.Close()
				return fmt.Errorf("central: migrate: %w", err)
			}
			applied[v] = name
			newest = max(newest, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("central: migrate: %w", err)
		}
		known := 0
		if len(ms) > 0 {
			known = ms[len(ms)-1].Version
		}
		if newest > known {
			return fmt.Errorf("%w: the database is at version %04d (%s), this sessctl knows up to %04d; upgrade sessctl before pointing it at this database",
				ErrSchemaTooNew, newest, applied[newest], known)
		}
		for _, m := range ms {
			name, ok := applied[m.Version]
			if ok {
				if name != m.Name {
					return fmt.Errorf("central: migrate: migration %04d is %q in the database but %q in this sessctl: not the same schema history", m.Version, name, m.Name)
				}
				continue
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("central: migrate: %04d_%s.sql: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO sessctl_schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return fmt.Errorf("central: migrate: record %04d: %w", m.Version, err)
			}
		}
		return nil
	})
}

// SchemaVersion returns the newest migration recorded in the database (0
// if none).
func SchemaVersion(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var v int
	err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM sessctl_schema_migrations").Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("central: schema version: %w", err)
	}
	return v, nil
}
