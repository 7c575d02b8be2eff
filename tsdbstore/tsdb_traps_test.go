package tsdbstore

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// TestTSDBTraps pins the behaviour of the embedded TSDB that the slot design
// exists for, so that an upgrade which changes it is noticed: one sample per
// series per millisecond, and silent drops.
func TestTSDBTraps(t *testing.T) {
	open := func(t *testing.T, ooo time.Duration) *tsdb.DB {
		opts := tsdb.DefaultOptions()
		opts.OutOfOrderTimeWindow = ooo.Milliseconds()
		db, err := tsdb.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	series := labels.FromStrings("__name__", "m")
	count := func(t *testing.T, db *tsdb.DB) int {
		q, err := db.Querier(math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		n := 0
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
		for set.Next() {
			it := set.At().Iterator(nil)
			for it.Next() != 0 {
				n++
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
		}
		if set.Err() != nil {
			t.Fatal(set.Err())
		}
		return n
	}
	appendOne := func(db *tsdb.DB, ts int64, v float64) error {
		app := db.AppenderV2(context.Background())
		if _, err := app.Append(0, series, 0, ts, v, nil, nil, storage.AOptions{}); err != nil {
			_ = app.Rollback()
			return err
		}
		return app.Commit()
	}
	// setUp stores the samples a case starts from; one that fails would
	// leave the case proving nothing.
	setUp := func(t *testing.T, db *tsdb.DB, ts int64, v float64) {
		t.Helper()
		if err := appendOne(db, ts, v); err != nil {
			t.Fatalf("setting up a sample at %d: %v", ts, err)
		}
	}
	now := time.Now().UnixMilli()

	t.Run("different value at an occupied millisecond is an error", func(t *testing.T) {
		db := open(t, 0)
		if err := appendOne(db, now, 1); err != nil {
			t.Fatal(err)
		}
		if err := appendOne(db, now, 2); !errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
			t.Fatalf("err = %v, want ErrDuplicateSampleForTimestamp", err)
		}
	})
	t.Run("same value at an occupied millisecond is silently one sample", func(t *testing.T) {
		db := open(t, 0)
		setUp(t, db, now, 1)
		if err := appendOne(db, now, 1); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db); n != 1 {
			t.Fatalf("%d samples", n)
		}
	})
	t.Run("out of order at an occupied millisecond is silently dropped", func(t *testing.T) {
		db := open(t, 10*time.Minute)
		setUp(t, db, now-5, 1)
		setUp(t, db, now, 1)
		if err := appendOne(db, now-5, 7); err != nil {
			t.Fatalf("err = %v", err)
		}
		if n := count(t, db); n != 2 {
			t.Fatalf("%d samples, want 2", n)
		}
	})
	t.Run("out of order inside one batch is dropped at commit without an error", func(t *testing.T) {
		db := open(t, 0)
		setUp(t, db, now-100, 0)
		app := db.AppenderV2(context.Background())
		for _, ts := range []int64{now, now - 50} {
			if _, err := app.Append(0, series, 0, ts, 1, nil, nil, storage.AOptions{}); err != nil {
				t.Fatalf("append at %d: %v", ts, err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db); n != 2 {
			t.Fatalf("%d samples, want 2 (the batch's older sample dropped)", n)
		}
	})
}
