package tsdbstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

func testOptions(t testing.TB) Options {
	return Options{
		ExperimentID:     "exp",
		OutOfOrderWindow: 10 * time.Minute,
		SyncInterval:     time.Second,
		DedupWindow:      time.Hour,
		Metrics:          AllMetrics,
		Registerer:       prometheus.NewRegistry(),
		Logger:           slog.New(slog.DiscardHandler),
	}
}

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// llmEvent builds an enriched event with latency, cost, tokens and success.
func llmEvent(tsUs int64, model string, latencyMs float64) *event.Event {
	return &event.Event{
		EventID: event.NewID(), ExperimentID: "exp", ExperimentName: "Exp", Condition: "control",
		EventName: "req_llm.request.stop", Timestamp: tsUs,
		LatencyMs: event.Some(latencyMs), CostUSD: event.Some(latencyMs / 1e4), Success: event.Some(latencyMs < 900),
		Tokens: &event.Tokens{Prompt: event.Some(int64(10)), Completion: event.Some(int64(20)), Total: event.Some(int64(30))},
		Model:  event.Some(model), Provider: event.Some("openai"), SampleWeight: 1,
	}
}

// sampleCounts reads every sample back through a TSDB querier.
func sampleCounts(t testing.TB, db *tsdb.DB) (map[string]int, map[string]float64) {
	t.Helper()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	counts, sums := map[string]int{}, map[string]float64{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, "crucible_.*"))
	for set.Next() {
		series := set.At()
		name := series.Labels().Get(model.MetricNameLabel)
		it := series.Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			counts[name]++
			sums[name] += v
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	}
	if set.Err() != nil {
		t.Fatal(set.Err())
	}
	return counts, sums
}

func mustAppend(t testing.TB, s *Store, evs []*event.Event) []Result {
	t.Helper()
	res, err := s.Append(evs, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func countStatus(res []Result, st Status) int {
	n := 0
	for _, r := range res {
		if r.Status == st {
			n++
		}
	}
	return n
}

// checkSamples asserts one sample per event per number, and that the values
// add up to the events' values.
func checkSamples(t *testing.T, db *tsdb.DB, evs []*event.Event) {
	t.Helper()
	counts, sums := sampleCounts(t, db)
	var latSum float64
	succ := 0
	for _, e := range evs {
		latSum += e.LatencyMs.V / 1000
		if e.Success.V {
			succ++
		}
	}
	for _, m := range []string{MetricLatency, MetricCost, MetricPromptTokens, MetricCompletionTokens, MetricSuccess} {
		if counts[m] != len(evs) {
			t.Errorf("%s: %d samples, want %d (one per event)", m, counts[m], len(evs))
		}
	}
	if math.Abs(sums[MetricLatency]-latSum) > 1e-9*latSum {
		t.Errorf("latency sum %v, want %v", sums[MetricLatency], latSum)
	}
	if int(sums[MetricSuccess]) != succ {
		t.Errorf("success sum %v, want %d", sums[MetricSuccess], succ)
	}
}

func TestSameMillisecondBursts(t *testing.T) {
	base := time.Now().Add(-time.Minute).UnixMicro()
	for _, n := range []int{2, 50, MaxSlots, 250} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := openStore(t, t.TempDir(), testOptions(t))
			defer s.Close()
			var evs []*event.Event
			for i := range n {
				evs = append(evs, llmEvent(base+int64(i%3), "gpt-4", float64(100+i)))
			}
			res := mustAppend(t, s, evs)
			if got := countStatus(res, Stored); got != n {
				t.Fatalf("stored %d of %d", got, n)
			}
			checkSamples(t, s.DB(), evs)
			if s.Count() != int64(n) {
				t.Fatalf("count %d, want %d", s.Count(), n)
			}
		})
	}
}

func TestOutOfOrderWithinWindow(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t))
	defer s.Close()
	base := time.Now().Add(-5 * time.Minute).UnixMicro()
	var evs []*event.Event
	for i := range 3000 {
		// 3000 events over two minutes, many sharing a millisecond.
		evs = append(evs, llmEvent(base+int64(i/7)*40_000, []string{"gpt-4", "gpt-4o"}[i%2], float64(i%1000)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	// One shuffled batch (out of order inside a batch), then shuffled
	// batches (out of order across batches).
	mustAppend(t, s, evs[:1000])
	for i := 1000; i < len(evs); i += 100 {
		mustAppend(t, s, evs[i:i+100])
	}
	checkSamples(t, s.DB(), evs)
}

func TestTooOldRejected(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t))
	defer s.Close()
	now := time.Now().UnixMicro()
	mustAppend(t, s, []*event.Event{llmEvent(now, "gpt-4", 1)})
	res := mustAppend(t, s, []*event.Event{llmEvent(now-int64(11*time.Minute/time.Microsecond), "gpt-4", 2)})
	if res[0].Status != Rejected || !errors.Is(res[0].Err, ErrTooOld) {
		t.Fatalf("got %+v, want ErrTooOld", res[0])
	}
	if s.Count() != 1 {
		t.Fatalf("a rejected event was stored: count %d", s.Count())
	}
	checkSamples(t, s.DB(), []*event.Event{llmEvent(now, "gpt-4", 1)})
}

func TestDedup(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	e := llmEvent(time.Now().UnixMicro(), "gpt-4", 5)
	e.EventID, e.ClientID = "client-1", true
	twin := *e
	res := mustAppend(t, s, []*event.Event{e, &twin})
	if res[0].Status != Stored || res[1].Status != Duplicate {
		t.Fatalf("got %+v", res)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, testOptions(t))
	defer s.Close()
	again := *e
	if res := mustAppend(t, s, []*event.Event{&again}); res[0].Status != Duplicate {
		t.Fatalf("after reopen: %+v, want duplicate", res[0])
	}
	if s.Count() != 1 {
		t.Fatalf("count %d", s.Count())
	}

	// The window is of arrival time, also when rebuilt from the log.
	for _, c := range []struct {
		id  string
		ago time.Duration
	}{{"client-59m", 59 * time.Minute}, {"client-61m", 61 * time.Minute}} {
		old := *e
		old.EventID = c.id
		if res, err := s.Append([]*event.Event{&old}, time.Now().Add(-c.ago)); err != nil || res[0].Status != Stored {
			t.Fatalf("%s: %+v, %v", c.id, res, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, testOptions(t))
	defer s.Close()
	for _, c := range []struct {
		id   string
		want Status
	}{{"client-1", Duplicate}, {"client-59m", Duplicate}, {"client-61m", Stored}} {
		t.Run(c.id, func(t *testing.T) {
			again := *e
			again.EventID = c.id
			if res := mustAppend(t, s, []*event.Event{&again}); res[0].Status != c.want {
				t.Errorf("after a second reopen, %s: %+v, want status %d", c.id, res[0], c.want)
			}
		})
	}
	if s.Count() != 4 {
		t.Fatalf("count %d, want 4", s.Count())
	}
}

func TestReopenKeepsSlots(t *testing.T) {
	dir := t.TempDir()
	ts := time.Now().Add(-time.Minute).UnixMicro()
	var all []*event.Event
	for round := range 3 {
		s := openStore(t, dir, testOptions(t))
		var evs []*event.Event
		for i := range 20 {
			evs = append(evs, llmEvent(ts, "gpt-4", float64(round*100+i)))
		}
		mustAppend(t, s, evs)
		all = append(all, evs...)
		checkSamples(t, s.DB(), all)
		if s.Count() != int64(len(all)) {
			t.Fatalf("round %d: count %d, want %d", round, s.Count(), len(all))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTornTailIsCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keep  int64
		wreck func(t *testing.T, path string)
	}{
		{"half a record", 9, func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()-7); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage appended", 10, func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{200, 0, 0, 0, 1, 2, 3})
			f.Close()
		}},
		{"flipped byte", 9, func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			b[len(b)-3] ^= 0xff
			os.WriteFile(path, b, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, testOptions(t))
			now := time.Now().UnixMicro()
			var evs []*event.Event
			for i := range 10 {
				evs = append(evs, llmEvent(now+int64(i*1000), "gpt-4", float64(i)))
			}
			mustAppend(t, s, evs[:9])
			mustAppend(t, s, evs[9:])
			s.Close()
			tc.wreck(t, segmentName(filepath.Join(dir, "events"), 1))

			var logs bytes.Buffer
			opts := testOptions(t)
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			s = openStore(t, dir, opts)
			defer s.Close()
			if s.Count() != tc.keep {
				t.Fatalf("count after cut %d, want %d", s.Count(), tc.keep)
			}
			if !strings.Contains(logs.String(), "cutting torn tail") {
				t.Fatalf("the cut was not logged: %s", logs.String())
			}
			// The log takes appends again after the cut.
			mustAppend(t, s, []*event.Event{llmEvent(now+20_000, "gpt-4", 1)})
			n := 0
			if err := s.Scan(context.Background(), func(*LogRecord) error { n++; return nil }); err != nil || int64(n) != tc.keep+1 {
				t.Fatalf("scan: %d records, err %v", n, err)
			}
		})
	}
}

func TestReplayRebuildsTSDB(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	now := time.Now().Add(-time.Minute).UnixMicro()
	var evs []*event.Event
	for i := range 500 {
		evs = append(evs, llmEvent(now+int64(i%50)*1000, "gpt-4", float64(i)))
	}
	mustAppend(t, s, evs)
	s.Close()
	// Lose the TSDB and the replay position: the log alone rebuilds it.
	os.RemoveAll(filepath.Join(dir, "tsdb"))
	os.Remove(filepath.Join(dir, appliedFile))
	s = openStore(t, dir, testOptions(t))
	checkSamples(t, s.DB(), evs)
	s.Close()
	// Replaying on top of a TSDB that has everything adds nothing.
	os.Remove(filepath.Join(dir, appliedFile))
	s = openStore(t, dir, testOptions(t))
	defer s.Close()
	checkSamples(t, s.DB(), evs)
}

func TestRegistererReleasedOnClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := testOptions(t)
	opts.Registerer = reg
	dir := t.TempDir()
	for range 2 {
		s := openStore(t, dir, opts)
		mfs, _ := reg.Gather()
		found := false
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "prometheus_tsdb_") && len(mf.GetMetric()) > 0 &&
				mf.GetMetric()[0].GetLabel()[0].GetValue() == "exp" {
				found = true
			}
		}
		if !found {
			t.Fatal("no prometheus_tsdb_* metric with experiment_id")
		}
		s.Close()
	}
}

func TestMetricsConfig(t *testing.T) {
	opts := testOptions(t)
	opts.Metrics = MetricsConfig{Latency: true}
	s := openStore(t, t.TempDir(), opts)
	defer s.Close()
	mustAppend(t, s, []*event.Event{llmEvent(time.Now().UnixMicro(), "gpt-4", 3)})
	counts, _ := sampleCounts(t, s.DB())
	if counts[MetricLatency] != 1 || counts[MetricCost] != 0 || counts[MetricSuccess] != 0 {
		t.Fatalf("counts %v: only latency is configured", counts)
	}
}

func TestSegmentRotation(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t)
	opts.SegmentSize = 1 << 10
	s := openStore(t, dir, opts)
	now := time.Now().Add(-time.Minute).UnixMicro()
	var evs []*event.Event
	for b := range 20 {
		var batch []*event.Event
		for i := range 10 {
			batch = append(batch, llmEvent(now+int64(b*10+i)*100, "gpt-4", float64(i)))
		}
		mustAppend(t, s, batch)
		evs = append(evs, batch...)
		if b%5 == 0 {
			s.tick() // closes full segments meanwhile
		}
	}
	segs, _ := listSegments(filepath.Join(dir, "events"))
	if len(segs) < 5 {
		t.Fatalf("%d segments, want rotation", len(segs))
	}
	s.Close()
	s = openStore(t, dir, opts)
	defer s.Close()
	n := 0
	s.Scan(context.Background(), func(*LogRecord) error { n++; return nil })
	if n != len(evs) || s.Count() != int64(len(evs)) {
		t.Fatalf("scan %d, count %d, want %d", n, s.Count(), len(evs))
	}
	checkSamples(t, s.DB(), evs)
}

// TestConcurrentAppends runs appends of interleaved, same-millisecond events
// from several goroutines: every event gets exactly its samples, and the
// replay position ends at the end of the log.
func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	base := time.Now().Add(-time.Minute).UnixMicro()
	const writers, batches, size = 4, 25, 40
	all := make([][]*event.Event, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				var batch []*event.Event
				for i := range size {
					e := llmEvent(base+int64(b*size+i)*300, []string{"gpt-4", "gpt-4o"}[i%2], float64(w*1000+i))
					e.EventID, e.ClientID = fmt.Sprintf("w%d-b%d-i%d", w, b, i), true
					batch = append(batch, e)
				}
				res, err := s.Append(batch, time.Now())
				if err != nil || countStatus(res, Stored) != size {
					t.Errorf("append: %v %+v", err, res)
					return
				}
				all[w] = append(all[w], batch...)
			}
		}()
	}
	wg.Wait()
	var evs []*event.Event
	for _, a := range all {
		evs = append(evs, a...)
	}
	checkSamples(t, s.DB(), evs)
	applied, end := s.applied.Load().Position, s.log.end()
	if applied != end {
		t.Fatalf("replay position %v, log end %v", applied, end)
	}
	// Everything was committed: a reopen replays nothing and counts all.
	reopenHolds(t, s, dir, evs)
}

// TestPointsIndexMatchesLog: the index holds exactly what the log does, and
// is rebuilt from the log when it does not (missing, torn, or stale).
func TestPointsIndexMatchesLog(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	now := time.Now().Add(-time.Minute).UnixMicro()
	var evs []*event.Event
	for i := range 300 {
		e := llmEvent(now+int64(i)*50, []string{"gpt-4", "gpt-4o", "claude"}[i%3], float64(i))
		if i%7 == 0 {
			e.Tokens, e.Success, e.CostUSD = nil, event.Null[bool]{}, event.Null[float64]{}
		}
		if i%3 != 1 { // runs of points with and without extra entries
			e.SampleID = event.Some(fmt.Sprintf("q-%d", i/2))
		}
		if i%5 < 2 {
			e.Scores = []event.Score{{Name: "exact_match", Value: float64(i % 2)}, {Name: fmt.Sprintf("judge.%d", i%4), Value: float64(i) / 300}}
		}
		if i%11 < 4 { // mapped from a span: the index keeps the key
			e.EventID = event.NewSpanKey([16]byte{1, byte(i)}, [8]byte{2, byte(i)}).EventID()
		}
		evs = append(evs, e)
	}
	mustAppend(t, s, evs[:100])
	mustAppend(t, s, evs[100:])
	fromIndex := func(s *Store) []Point {
		var out []Point
		if err := s.Points(context.Background(), func(p *Point) error {
			q := *p // Sample and Scores are the reader's: copied
			q.Sample, q.Scores = strings.Clone(p.Sample), slices.Clone(p.Scores)
			out = append(out, q)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := fromIndex(s)
	if len(want) != 300 {
		t.Fatalf("%d points", len(want))
	}
	for i, p := range want {
		if p.Sample != evs[i].SampleID.V || !slices.Equal(p.Scores, evs[i].Scores) {
			t.Fatalf("point %d: sample %q scores %v, want %q %v", i, p.Sample, p.Scores, evs[i].SampleID.V, evs[i].Scores)
		}
		if k, ok := event.SpanKeyOf(evs[i].EventID); p.HasSpan != ok || p.Span != k {
			t.Fatalf("point %d: span %x (%v), want %x (%v)", i, p.Span, p.HasSpan, k, ok)
		}
	}
	// The log says the same.
	s.pointsOK.Store(false)
	if got := fromIndex(s); !samePoints(got, want) {
		t.Fatal("the log and the index disagree")
	}
	s.Close()
	for _, tc := range []struct {
		name  string
		wreck func() error // an error: nothing was wrecked, the rebuild untested
	}{
		{"index missing", func() error { return os.Remove(filepath.Join(dir, pointsFile)) }},
		{"index torn", func() error {
			fi, err := os.Stat(filepath.Join(dir, pointsFile))
			if err != nil {
				return err
			}
			return os.Truncate(filepath.Join(dir, pointsFile), fi.Size()-pointSize-5)
		}},
		{"names and index missing", func() error {
			return errors.Join(os.Remove(filepath.Join(dir, namesFile)), os.Remove(filepath.Join(dir, pointsFile)))
		}},
		{"extra entries missing", func() error { return os.Truncate(filepath.Join(dir, extraFile), 0) }},
		{"an extra entry damaged", func() error {
			b, err := os.ReadFile(filepath.Join(dir, extraFile))
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0x10
			return os.WriteFile(filepath.Join(dir, extraFile), b, 0o644)
		}},
		{"extra entries past the points", func() error {
			f, err := os.OpenFile(filepath.Join(dir, extraFile), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write([]byte("left by a crash"))
			return errors.Join(err, f.Close())
		}},
		{"the last point damaged", func() error {
			f, err := os.OpenFile(filepath.Join(dir, pointsFile), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			// The top byte of its extra end: negative, were it trusted.
			_, err = f.WriteAt([]byte{0x80}, fi.Size()-pointSize+71)
			return errors.Join(err, f.Close())
		}},
		{"an index of the first version", func() error {
			return errors.Join(os.Rename(filepath.Join(dir, pointsFile), filepath.Join(dir, legacyPointsFiles[0])), os.Remove(filepath.Join(dir, extraFile)))
		}},
		{"an index of the second version", func() error {
			return errors.Join(os.Rename(filepath.Join(dir, pointsFile), filepath.Join(dir, legacyPointsFiles[1])),
				os.Rename(filepath.Join(dir, extraFile), filepath.Join(dir, legacyPointsFiles[2])))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.wreck(); err != nil {
				t.Fatal(err)
			}
			s := openStore(t, dir, testOptions(t))
			defer s.Close()
			if got := fromIndex(s); !samePoints(got, want) {
				t.Fatalf("after a rebuild: %d points", len(got))
			}
			for _, name := range legacyPointsFiles {
				if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the index of an earlier version is left: %v", err)
				}
			}
		})
	}
}

func samePoints(a, b []Point) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.TimestampUs != y.TimestampUs || x.Event != y.Event || x.Model != y.Model || x.Judged != y.Judged || x.Success != y.Success ||
			x.HasTokens != y.HasTokens || x.Total != y.Total || !sameFloat(x.LatencyMs, y.LatencyMs) || !sameFloat(x.CostUSD, y.CostUSD) ||
			x.Sample != y.Sample || !slices.Equal(x.Scores, y.Scores) || x.Span != y.Span || x.HasSpan != y.HasSpan {
			return false
		}
	}
	return true
}

func sameFloat(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

// seriesByModel counts latency samples per model label.
func seriesByModel(t *testing.T, db *tsdb.DB) map[string]int {
	t.Helper()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	out := map[string]int{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, MetricLatency))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			out[set.At().Labels().Get("model")]++
		}
	}
	return out
}

// TestLabelValuesCapped: past MaxLabelValues models, events are stored in
// the "other" series; every event keeps its samples, a replay puts them
// back where they were, and the cap holds across a restart.
func TestLabelValuesCapped(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t)
	opts.MaxLabelValues = 3
	s := openStore(t, dir, opts)
	base := time.Now().Add(-time.Minute).UnixMicro()
	var evs []*event.Event
	for i := range 60 { // models m0..m5, ten events each, several in one millisecond
		evs = append(evs, llmEvent(base+int64(i/4)*1000, fmt.Sprintf("m%d", i%6), float64(i+1)))
	}
	mustAppend(t, s, evs)
	want := map[string]int{"m0": 10, "m1": 10, "m2": 10, event.OverflowValue: 30}
	if got := seriesByModel(t, s.db); !maps.Equal(got, want) {
		t.Fatalf("samples by model %v, want %v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A TSDB rebuilt from the log alone.
	os.RemoveAll(filepath.Join(dir, "tsdb"))
	os.Remove(filepath.Join(dir, appliedFile))
	opts.Registerer = prometheus.NewRegistry()
	s = openStore(t, dir, opts)
	defer s.Close()
	if got := seriesByModel(t, s.db); !maps.Equal(got, want) {
		t.Fatalf("after a replay: samples by model %v, want %v", got, want)
	}
	// Admitted values stay admitted, new ones overflow.
	mustAppend(t, s, []*event.Event{llmEvent(base+40_000, "m1", 1), llmEvent(base+40_000, "m9", 1)})
	want["m1"]++
	want[event.OverflowValue]++
	if got := seriesByModel(t, s.db); !maps.Equal(got, want) {
		t.Fatalf("after a restart: samples by model %v, want %v", got, want)
	}
	if len(s.series) > 3*4+4 { // at most (admitted + other) × slots in use
		t.Fatalf("%d cached series", len(s.series))
	}
}

func TestNewestSegments(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		want  []string
	}{
		{"empty", nil, nil},
		{"one", []string{"00000000"}, []string{"00000000"}},
		{"by number, checkpoint ignored", []string{"00000002", "00000010", "00000009", "checkpoint.00000001"}, []string{"00000009", "00000010"}},
		{"past eight digits", []string{"99999999", "100000000"}, []string{"99999999", "100000000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var entries []os.DirEntry
			for _, n := range tc.names {
				if strings.HasPrefix(n, "checkpoint") {
					os.Mkdir(filepath.Join(dir, n), 0o755)
				} else {
					os.WriteFile(filepath.Join(dir, n), nil, 0o644)
				}
			}
			entries, _ = os.ReadDir(dir)
			if got := newestSegments(entries, 2); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("%v: %v, want %v", tc.names, got, tc.want)
			}
		})
	}
}

// TestReplayPositionFollowsTheWAL: the housekeeping records the replay
// position (after syncing the TSDB's logs), and only when it moved.
func TestReplayPositionFollowsTheWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out housekeeping rounds: slow; runs without -short")
	}
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	defer s.Close()
	base := time.Now().Add(-time.Minute).UnixMicro()
	mustAppend(t, s, []*event.Event{llmEvent(base, "m", 1), llmEvent(base-5000, "m", 2)}) // the second goes to the out-of-order WBL
	deadline := time.Now().Add(10 * time.Second)
	for s.readApplied().Position != s.log.end() {
		if time.Now().After(deadline) {
			t.Fatalf("replay position %v, want the log's end %v", s.readApplied().Position, s.log.end())
		}
		time.Sleep(50 * time.Millisecond)
	}
	info, err := os.Stat(filepath.Join(dir, appliedFile))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // two housekeeping rounds with nothing new
	if again, _ := os.Stat(filepath.Join(dir, appliedFile)); !again.ModTime().Equal(info.ModTime()) {
		t.Fatal("replay position rewritten without a change")
	}
}
