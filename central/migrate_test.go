package central

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessctl/sessctl/internal/pgtest"
)

func TestReadMigrations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []int
		err   string
	}{
		{"ordered", map[string]string{"0002_b.sql": "B", "0001_a.sql": "A"}, []int{1, 2}, ""},
		{"gap", map[string]string{"0001_a.sql": "A", "0003_c.sql": "C"}, nil, "expected version 0002"},
		{"duplicate", map[string]string{"0001_a.sql": "A", "0001_b.sql": "B"}, nil, "expected version 0002"},
		{"bad name", map[string]string{"0001_a.sql": "A", "two.sql": "B"}, nil, "not named NNNN_name.sql"},
		{"starts at 2", map[string]string{"0002_b.sql": "B"}, nil, "expected version 0001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for n, s := range tc.files {
				fsys["m/"+n] = &fstest.MapFile{Data: []byte(s)}
			}
			ms, err := readMigrations(fsys, "m")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.Version)
			}
			if len(got) != len(tc.want) || got[0] != tc.want[0] || got[len(got)-1] != tc.want[len(tc.want)-1] {
				t.Fatalf("versions %v, want %v", got, tc.want)
			}
		})
	}
	ms, err := Migrations()
	if err != nil || len(ms) == 0 || ms[0].Name != "log" {
		t.Fatalf("embedded migrations: %v %v", ms, err)
	}
}

func TestMigrate(t *testing.T) {
	pg := pgtest.Start(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	// Twice at once, then again: each migration is applied once.
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- Migrate(ctx, pool) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	v, err := SchemaVersion(ctx, pool)
	if err != nil || v != ms[len(ms)-1].Version {
		t.Fatalf("schema version %d, %v; want %d", v, err, ms[len(ms)-1].Version)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM sessctl_schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("%d migrations recorded (%v), want %d", n, err, len(ms))
	}
	// A migration this binary does not have: refuse.
	if _, err := pool.Exec(ctx, "INSERT INTO sessctl_schema_migrations (version, name) VALUES (9999, 'from_the_future')"); err != nil {
		t.Fatal(err)
	}
	err = Migrate(ctx, pool)
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("Migrate on a newer schema: %v", err)
	}
	if _, err := pool.Exec(ctx, "DELETE FROM sessctl_schema_migrations WHERE version = 9999"); err != nil {
		t.Fatal(err)
	}
	// A recorded migration under another name: another schema history.
	if _, err := pool.Exec(ctx, "UPDATE sessctl_schema_migrations SET name = 'other' WHERE version = 1"); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, pool); err == nil || !strings.Contains(err.Error(), "not the same schema history") {
		t.Fatalf("Migrate with a renamed migration: %v", err)
	}
}
