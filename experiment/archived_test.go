package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/storage"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// An archived experiment's store stays closed after a restart until
// something reads it: no TSDB series, goroutines or memory for it, and its
// record still counts its events.
func TestArchivedStoreOpensWhenRead(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Now()}
	open := func() (*Manager, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		m := NewManager(Options{
			Dir: dir, Now: c.now,
			Metrics: collector.New(reg, collector.Options{StoppedSeriesTTL: time.Minute, Now: c.now}),
			Store:   tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
		})
		if err := m.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m, reg
	}
	m, _ := open()
	oldAndLive(t, m)
	m.Close()

	c.t = c.t.Add(time.Hour) // past the stopped series' TTL
	m, reg := open()
	series := func() string {
		t.Helper()
		var b strings.Builder
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "prometheus_tsdb_head_series" {
				for _, mm := range mf.GetMetric() {
					b.WriteString(mm.GetLabel()[0].GetValue() + " ")
				}
			}
		}
		return b.String()
	}
	if got := series(); got != "live " {
		t.Fatalf("TSDB series of %q after the restart, want only the live experiment's", got)
	}
	r, err := m.Get("old")
	if err != nil || r.EventsStored != 5 || r.Status != Archived {
		t.Fatalf("archived record: %+v %v", r, err)
	}
	pts, err := m.Points(t.Context(), "old", Filter{})
	if err != nil || len(pts) != 5 {
		t.Fatalf("reading the archived experiment: %d points, %v", len(pts), err)
	}
	if got := series(); got != "live old " && got != "old live " {
		t.Fatalf("TSDB series %q after the read, want both", got)
	}
	if n := testutil.CollectAndCount(unavailableCollector{m}); n != 0 {
		t.Fatalf("%d unavailable experiments", n)
	}
}

// Archived blocks carry Thanos' external labels in meta.json: the
// experiment's id and condition and the sidecar's external labels, at raw
// resolution.
func TestArchivedBlocksCarryThanosLabels(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, &clock{time.Now()})
	m.opts.ExternalLabels = map[string]string{"pod": "crucible-0", "cluster": "eu"}
	create(t, m, `{"id":"arm-b","name":"Arm B","condition":"treatment"}`)
	if _, err := m.Ingest("arm-b", events(t, 20, ""), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Archive("arm-b"); err != nil {
		t.Fatal(err)
	}
	unpacked := unpackArchive(t, ArchivePath(dir, "arm-b"))
	metas, err := filepath.Glob(filepath.Join(unpacked, "experiments", "arm-b", "tsdb", "*", "meta.json"))
	if err != nil || len(metas) == 0 {
		t.Fatalf("no block in the archive: %v", err)
	}
	for _, path := range metas {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			ULID   string `json:"ulid"`
			Thanos struct {
				Labels     map[string]string `json:"labels"`
				Downsample struct {
					Resolution int64 `json:"resolution"`
				} `json:"downsample"`
				Source string `json:"source"`
			} `json:"thanos"`
		}
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"experiment_id": "arm-b", "condition": "treatment", "pod": "crucible-0", "cluster": "eu"}
		if meta.ULID == "" || !maps.Equal(meta.Thanos.Labels, want) || meta.Thanos.Source != "sidecar" || meta.Thanos.Downsample.Resolution != 0 {
			t.Fatalf("%s: %s", path, b)
		}
	}
	// The unpacked archive still opens as a data directory.
	if r, err := NewOffline(unpacked).Analyze(context.Background(), "arm-b", Filter{}); err != nil || r.Summary.TotalEvents != 20 {
		t.Fatalf("offline analysis of the archive: %v %+v", err, r.Summary)
	}
}

// A query holding one store open while the Manager closes must not block
// opening another (archived) one: it gets an error, lets go of what it
// holds, and Close finishes.
func TestCloseDuringQueryOpeningAnArchive(t *testing.T) {
	dir := t.TempDir()
	m, err := openManager(dir)
	if err != nil {
		t.Fatal(err)
	}
	oldAndLive(t, m)
	m.Close()
	if m, err = openManager(dir); err != nil { // the archive's store stays closed
		t.Fatal(err)
	}
	targets, err := m.QueryTargets()
	if err != nil || len(targets) != 2 {
		t.Fatalf("targets %v %v", targets, err)
	}
	byID := map[string]QueryTarget{}
	for _, tg := range targets {
		byID[tg.ID()] = tg
	}
	held, err := byID["live"].Querier(0, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	for !byID["old"].x.gone.Load() { // Close has begun: no store opens now
		time.Sleep(time.Millisecond)
	}
	opened := make(chan error, 1)
	go func() {
		q, err := byID["old"].Querier(0, time.Now().UnixMilli())
		if err == nil {
			q.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err == nil {
			t.Fatal("an archived store opened while the Manager closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("opening an archived store blocked behind Close")
	}
	held.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not finish once the query let go")
	}
}

// The store of an archived experiment closes once no one read it for
// ArchivedIdle; a read opens it again, a query in flight keeps it open,
// and reads racing the closing all succeed.
func TestIdleArchivedStoresClose(t *testing.T) {
	m := newManager(t, t.TempDir(), &clock{time.Now()}, func(o *Options) { o.ArchivedIdle = 30 * time.Millisecond })
	oldAndLive(t, m)
	old, err := m.lookup("old")
	if err != nil {
		t.Fatal(err)
	}
	live, err := m.lookup("live")
	if err != nil {
		t.Fatal(err)
	}
	closed := func() bool { return old.store.Load() == nil }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the archived store to close", closed)
	if r, err := m.Get("old"); err != nil || r.EventsStored != 5 {
		t.Fatalf("the closed archived experiment's record: %+v %v", r, err)
	}
	time.Sleep(100 * time.Millisecond)
	if live.store.Load() == nil {
		t.Fatal("a running experiment's store was closed as idle")
	}

	if pts, err := m.Points(t.Context(), "old", Filter{}); err != nil || len(pts) != 5 {
		t.Fatalf("reading the closed archived experiment: %d points, %v", len(pts), err)
	}
	waitFor("the store read again to close", closed)

	ts, err := m.QueryTargets()
	if err != nil {
		t.Fatal(err)
	}
	var q storage.Querier
	for _, tg := range ts {
		if tg.ID() == "old" {
			if q, err = tg.Querier(math.MinInt64, math.MaxInt64); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(150 * time.Millisecond)
	if closed() {
		t.Fatal("the store closed under a query in flight")
	}
	q.Close()
	waitFor("the store to close after the query", closed)

	// Closed as idle between the lookup and the read: read again.
	first := true
	err = m.readStore("old", func(s *tsdbstore.Store, _ Spec) error {
		if first {
			first = false
			waitFor("the store to be idle", func() bool { m.closeIdle(); return closed() })
		}
		return s.Points(t.Context(), func(*tsdbstore.Point) error { return nil })
	})
	if err != nil || first {
		t.Fatalf("a read whose store closed as idle under it: %v", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 4 {
		wg.Go(func() {
			for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond) {
				if pts, err := m.Points(t.Context(), "old", Filter{}); err != nil || len(pts) != 5 {
					errs <- fmt.Errorf("%d points, %v", len(pts), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a read racing the idle closing: %v", err)
	}
}

// oldAndLive makes two experiments of five events each, "old" archived
// and "live" running.
func oldAndLive(t *testing.T, m *Manager) {
	t.Helper()
	create(t, m, `{"id":"old","name":"Old"}`)
	create(t, m, `{"id":"live","name":"Live"}`)
	for _, id := range []string{"old", "live"} {
		if _, err := m.Ingest(id, events(t, 5, ""), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Archive("old"); err != nil {
		t.Fatal(err)
	}
}
