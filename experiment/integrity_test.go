package experiment

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

func openManager(dir string) (*Manager, error) {
	m := NewManager(Options{
		Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour,
			Registerer: prometheus.NewRegistry()},
	})
	return m, m.Open()
}

// One process per data directory: a second is refused with an error that
// names the lock and its holder, and gets it once the first has closed.
func TestDataDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, &clock{time.Now()})
	create(t, m, `{"id":"a","name":"A"}`)

	second, err := openManager(dir)
	if !errors.Is(err, ErrLocked) {
		second.Close()
		t.Fatalf("second open: err = %v, want ErrLocked", err)
	}
	for _, want := range []string{filepath.Join(dir, lockFile), fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %q", err, want)
		}
	}
	if _, err := m.Ingest("a", events(t, 3, ""), time.Now()); err != nil {
		t.Fatalf("the first process is disturbed: %v", err)
	}
	m.Close()
	again, err := openManager(dir)
	if err != nil {
		t.Fatalf("open after the holder closed: %v", err)
	}
	defer again.Close()
	if r, err := again.Get("a"); err != nil || r.EventsStored != 3 {
		t.Fatalf("after reopen: %+v %v", r, err)
	}
}

// A create never removes or adopts what it did not make: a directory with
// the events of an experiment whose record is lost is left alone and named.
func TestCreateKeepsDirectoriesItDidNotMake(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, &clock{time.Now()})
	create(t, m, `{"id":"x","name":"X"}`)
	if _, err := m.Ingest("x", events(t, 5, ""), time.Now()); err != nil {
		t.Fatal(err)
	}
	m.Close()
	xdir := experimentDir(dir, "x")
	for _, name := range []string{recordFile, recordCopy} {
		if err := os.Remove(filepath.Join(xdir, name)); err != nil {
			t.Fatal(err)
		}
	}
	m = newManager(t, dir, &clock{time.Now()})
	r, err := m.Get("x")
	if err != nil || r.Storage == nil || r.Storage.Status != HealthUnavailable {
		t.Fatalf("x without a record: %+v %v, want it listed as unavailable", r, err)
	}
	req, _ := DecodeCreateRequest([]byte(`{"id":"x","name":"X again"}`))
	if _, _, err := m.Create(req); !errors.Is(err, ErrConflict) {
		t.Fatalf("re-create over lost events: err = %v, want a conflict", err)
	}
	n := 0
	if _, err := tsdbstore.ReadLog(filepath.Join(xdir, eventsDir), func(*tsdbstore.LogRecord) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("the old events: %d, %v; want all 5 kept", n, err)
	}

	// A directory a create left without events is reused.
	if err := os.MkdirAll(filepath.Join(experimentDir(dir, "empty"), eventsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	create(t, m, `{"id":"empty","name":"E"}`)
}

// One damaged experiment never takes the others offline: they serve, and
// it is listed with the reason.
func TestDamagedExperimentLeavesOthersServing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		wreck     func(t *testing.T, xdir string)
		available bool // recovered from what is left
	}{
		{"record truncated, copy intact", func(t *testing.T, xdir string) {
			truncateFile(t, filepath.Join(xdir, recordFile))
		}, true},
		{"record missing, copy intact", func(t *testing.T, xdir string) {
			os.Remove(filepath.Join(xdir, recordFile))
		}, true},
		{"record and copy truncated", func(t *testing.T, xdir string) {
			truncateFile(t, filepath.Join(xdir, recordFile))
			truncateFile(t, filepath.Join(xdir, recordCopy))
		}, false},
		{"storage does not open", func(t *testing.T, xdir string) {
			// A file where the TSDB's WAL directory belongs.
			wal := filepath.Join(xdir, "tsdb", "wal")
			if err := os.RemoveAll(wal); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(wal, []byte("not a directory"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := newManager(t, dir, &clock{time.Now()})
			create(t, m, `{"id":"good","name":"Good"}`)
			create(t, m, `{"id":"bad","name":"Bad"}`)
			for _, id := range []string{"good", "bad"} {
				if _, err := m.Ingest(id, events(t, 4, ""), time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			m.Close()
			tc.wreck(t, experimentDir(dir, "bad"))

			m = newManager(t, dir, &clock{time.Now()})
			if !m.Ready() {
				t.Fatal("not ready")
			}
			if res, err := m.Ingest("good", events(t, 2, ""), time.Now()); err != nil || res.Accepted != 2 {
				t.Fatalf("the good experiment does not serve: %+v %v", res, err)
			}
			list, err := m.List("", "")
			if err != nil || len(list) != 2 {
				t.Fatalf("list: %d records, %v", len(list), err)
			}
			bad, err := m.Get("bad")
			if err != nil {
				t.Fatal(err)
			}
			if tc.available {
				if bad.Storage.Status != HealthOK || bad.EventsStored != 4 {
					t.Fatalf("recovered experiment: %+v", bad)
				}
				if _, _, err := readRecordFile(experimentDir(dir, "bad")); err != nil {
					t.Fatalf("the record was not written back: %v", err)
				}
				return
			}
			if bad.Storage.Status != HealthUnavailable || bad.Storage.Error == "" {
				t.Fatalf("damaged experiment listed as %+v", bad.Storage)
			}
			gauge := `# HELP crucible_experiment_storage_unavailable 1 for each experiment whose storage could not be opened; the reason is in its record and the log.
# TYPE crucible_experiment_storage_unavailable gauge
crucible_experiment_storage_unavailable{experiment_id="bad"} 1
`
			if err := testutil.GatherAndCompare(m.opts.Store.Registerer.(prometheus.Gatherer), strings.NewReader(gauge), "crucible_experiment_storage_unavailable"); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Ingest("bad", events(t, 1, ""), time.Now()); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("ingest into the damaged experiment: %v", err)
			}
			if _, err := m.Points(t.Context(), "bad", Filter{}); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("read of the damaged experiment: %v", err)
			}
			// PromQL lists it, so that an answer warns that it is missing.
			targets, err := m.QueryTargets()
			if err != nil {
				t.Fatal(err)
			}
			listed := false
			for _, tg := range targets {
				if tg.ID() == "bad" {
					_, err := tg.Querier(0, 1)
					listed = errors.Is(err, ErrUnavailable)
				}
			}
			if !listed {
				t.Fatalf("PromQL targets %v do not list the damaged experiment as unavailable", targets)
			}
			res, _ := m.Ingest("", events(t, 1, `,"experiment_id":"bad"`), time.Now())
			if len(res.Rejected) != 1 || !strings.Contains(res.Rejected[0].Error, "unavailable") {
				t.Fatalf("routed by experiment_id: %+v", res)
			}
			// Giving up on it: delete removes it, and the id is free again.
			if err := m.Delete("bad"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(experimentDir(dir, "bad")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the damaged experiment's files are still there: %v", err)
			}
			create(t, m, `{"id":"bad","name":"Bad again"}`)
		})
	}
}

func truncateFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// The label cap is decided once per event, in storage: concurrent batches
// of new models put the same models under "other" on /metrics as in the
// TSDB, also after a restart.
func TestLabelCapDecidedOnce(t *testing.T) {
	dir := t.TempDir()
	open := func() (*Manager, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		m := NewManager(Options{
			Dir: dir, Logger: slog.New(slog.DiscardHandler),
			Metrics: collector.New(reg, collector.Options{StoppedSeriesTTL: time.Hour}),
			Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour,
				Registerer: reg, MaxLabelValues: 5},
		})
		if err := m.Open(); err != nil {
			t.Fatal(err)
		}
		return m, reg
	}
	m, reg := open()
	create(t, m, `{"id":"cap","name":"Cap"}`)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				model := fmt.Sprintf("m-%d", (w*7+i)%20)
				if _, err := m.Ingest("cap", events(t, 3, `,"metadata":{"model":"`+model+`"}`), time.Now()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	check := func(m *Manager, reg *prometheus.Registry) {
		t.Helper()
		live := liveModelCounts(t, reg)
		x, err := m.lookup("cap")
		if err != nil {
			t.Fatal(err)
		}
		stored := tsdbModelCounts(t, x.store.Load())
		if len(live) != 6 || live[event.OverflowValue] == 0 || !maps.Equal(live, stored) {
			t.Fatalf("models on /metrics %v, in the TSDB %v: want the same five and other", live, stored)
		}
	}
	check(m, reg)
	m.Close()
	m, reg = open()
	defer m.Close()
	check(m, reg)
}

// liveModelCounts counts the observations of crucible_latency_seconds by
// model.
func liveModelCounts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "crucible_latency_seconds" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "model" {
					out[l.GetValue()] += float64(mm.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return out
}

// tsdbModelCounts counts the latency samples of a store by model.
func tsdbModelCounts(t *testing.T, s *tsdbstore.Store) map[string]float64 {
	t.Helper()
	q, err := s.DB().Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[string]float64{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, tsdbstore.MetricLatency))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			out[set.At().Labels().Get("model")]++
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// An archive unpacks as a data directory the offline commands read.
func TestArchiveUnpacksAsADataDirectory(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, &clock{time.Now()})
	create(t, m, `{"id":"arc","name":"Arc"}`)
	if _, err := m.Ingest("arc", events(t, 5, ""), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Archive("arc"); err != nil {
		t.Fatal(err)
	}
	unpacked := unpackArchive(t, ArchivePath(dir, "arc"))
	d := NewOffline(unpacked)
	rec, err := d.Get("arc")
	if err != nil {
		t.Fatal(err)
	}
	pts, err := d.Points(t.Context(), "arc", Filter{})
	if err != nil || len(pts) != 5 || rec.Status != Archived {
		t.Fatalf("unpacked archive: %d points, status %s, %v", len(pts), rec.Status, err)
	}
}

// unpackArchive unpacks an experiment's archive into a new directory and
// returns it.
func unpackArchive(t *testing.T, archive string) string {
	t.Helper()
	unpacked := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return unpacked
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(unpacked, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(path, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
