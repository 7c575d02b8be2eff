package tsdbstore

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// scoreSums reads crucible_event_score back: sample count and sum by score
// label.
func scoreSums(t *testing.T, db *tsdb.DB) (map[string]int, map[string]float64) {
	t.Helper()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	counts, sums := map[string]int{}, map[string]float64{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, MetricScore))
	for set.Next() {
		name := set.At().Labels().Get(ScoreLabel)
		if l := set.At().Labels(); l.Get("experiment_id") != "exp" || l.Get("event") != "req_llm.request.stop" || l.Get("model") != "gpt-4" {
			t.Fatalf("score series without the event's labels: %v", set.At().Labels())
		}
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			counts[name]++
			sums[name] += v
		}
	}
	if set.Err() != nil {
		t.Fatal(set.Err())
	}
	return counts, sums
}

func scored(ts int64, scores ...event.Score) *event.Event {
	e := llmEvent(ts, "gpt-4", 100)
	e.Scores = scores
	return e
}

// TestScoresCapped: each score is one crucible_event_score sample; names
// past the cap go to "other" (one sample per event), the decision reaches
// the caller, a rebuilt TSDB holds the same samples, and a restart keeps
// the cap and tells the visitor each record's decision.
func TestScoresCapped(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t)
	opts.MaxLabelValues = 2
	s := openStore(t, dir, opts)
	base := time.Now().Add(-time.Minute).UnixMicro()
	evs := []*event.Event{
		scored(base, event.Score{Name: "a", Value: 1}),
		scored(base, event.Score{Name: "a", Value: 0.5}, event.Score{Name: "b", Value: 2}), // same ms: another slot
		scored(base+1000, event.Score{Name: "a", Value: 1}, event.Score{Name: "c", Value: 3}, event.Score{Name: "d", Value: 4}),
		scored(base + 2000),
	}
	res := mustAppend(t, s, evs)
	wantOverflow := []event.LabelOverflow{0, 0, event.OverflowScore(1) | event.OverflowScore(2), 0}
	for i, r := range res {
		if r.Overflow != wantOverflow[i] {
			t.Errorf("event %d: overflow %b, want %b", i, r.Overflow, wantOverflow[i])
		}
	}
	wantCounts := map[string]int{"a": 3, "b": 1, event.OverflowValue: 1}
	wantSums := map[string]float64{"a": 2.5, "b": 2, event.OverflowValue: 3}
	check := func(when string) {
		t.Helper()
		counts, sums := scoreSums(t, s.DB())
		if !maps.Equal(counts, wantCounts) || !maps.Equal(sums, wantSums) {
			t.Fatalf("%s: score samples %v sums %v, want %v %v", when, counts, sums, wantCounts, wantSums)
		}
	}
	check("stored")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	os.RemoveAll(filepath.Join(dir, "tsdb"))
	os.Remove(filepath.Join(dir, appliedFile))
	opts.Registerer = prometheus.NewRegistry()
	var seen []event.LabelOverflow
	opts.Visit = func(r *LogRecord) error { seen = append(seen, r.Overflow()); return nil }
	s = openStore(t, dir, opts)
	defer s.Close()
	check("rebuilt from the log")
	if fmt.Sprint(seen) != fmt.Sprint(wantOverflow) {
		t.Fatalf("visitor saw overflow %v, want %v", seen, wantOverflow)
	}
	// Admitted names stay admitted; new ones overflow.
	res = mustAppend(t, s, []*event.Event{scored(base+3000, event.Score{Name: "b", Value: 1}, event.Score{Name: "e", Value: 5})})
	if res[0].Overflow != event.OverflowScore(1) {
		t.Fatalf("after a restart: overflow %b", res[0].Overflow)
	}
	wantCounts["b"]++
	wantSums["b"]++
	wantCounts[event.OverflowValue]++
	wantSums[event.OverflowValue] += 5
	check("after a restart")
}

// TestScoreDecisionsAreStored: each record keeps the decision it was stored
// with — across a restart with a larger cap, a TSDB rebuilt from the log,
// and a failed append — while new events are decided under the new cap.
func TestScoreDecisionsAreStored(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t)
	opts.MaxLabelValues = 2
	s := openStore(t, dir, opts)
	base := time.Now().Add(-time.Minute).UnixMicro()
	s.failCommit = func() error { return fmt.Errorf("disk on fire") }
	if _, err := s.Append([]*event.Event{scored(base, event.Score{Name: "lost", Value: 1})}, time.Now()); err == nil {
		t.Fatal("append succeeded with a failing commit")
	}
	s.failCommit = nil
	res := mustAppend(t, s, []*event.Event{scored(base+1000, event.Score{Name: "a", Value: 1}, event.Score{Name: "b", Value: 2}, event.Score{Name: "c", Value: 3})})
	// "lost" took a place in memory, as a failed append's labels do; what is
	// stored is what counts.
	if want := event.OverflowScore(1) | event.OverflowScore(2); res[0].Overflow != want {
		t.Fatalf("overflow %b, want %b", res[0].Overflow, want)
	}
	s.Close()

	os.RemoveAll(filepath.Join(dir, "tsdb"))
	os.Remove(filepath.Join(dir, appliedFile))
	opts.MaxLabelValues = 3
	opts.Registerer = prometheus.NewRegistry()
	var seen []event.LabelOverflow
	opts.Visit = func(r *LogRecord) error { seen = append(seen, r.Overflow()); return nil }
	s = openStore(t, dir, opts)
	defer s.Close()
	if fmt.Sprint(seen) != fmt.Sprint([]event.LabelOverflow{res[0].Overflow}) {
		t.Fatalf("visitor saw %v, want the stored decision %b", seen, res[0].Overflow)
	}
	counts, _ := scoreSums(t, s.DB())
	if want := map[string]int{"a": 1, event.OverflowValue: 1}; !maps.Equal(counts, want) {
		t.Fatalf("rebuilt TSDB: %v, want %v", counts, want)
	}
	// The cap is now 3 and a, the only name the log kept, is in: b and c
	// may come in now, d may not.
	res = mustAppend(t, s, []*event.Event{scored(base+2000, event.Score{Name: "b", Value: 1}, event.Score{Name: "c", Value: 1}, event.Score{Name: "d", Value: 1})})
	if want := event.OverflowScore(2); res[0].Overflow != want {
		t.Fatalf("after the restart: overflow %b, want %b", res[0].Overflow, want)
	}
}

// TestScoreNamedOther: a score really named "other" keeps its series; names
// past the cap in the same event then record nothing there, so no series
// gets two samples at one time.
func TestScoreNamedOther(t *testing.T) {
	opts := testOptions(t)
	opts.MaxLabelValues = 1
	s := openStore(t, t.TempDir(), opts)
	defer s.Close()
	base := time.Now().Add(-time.Minute).UnixMicro()
	mustAppend(t, s, []*event.Event{
		scored(base, event.Score{Name: event.OverflowValue, Value: 7}),
		scored(base+1000, event.Score{Name: "aaa", Value: 1}, event.Score{Name: event.OverflowValue, Value: 9}),
		scored(base+2000, event.Score{Name: "bbb", Value: 2}),
	})
	counts, sums := scoreSums(t, s.DB())
	if !maps.Equal(counts, map[string]int{event.OverflowValue: 3}) || sums[event.OverflowValue] != 18 {
		t.Fatalf("score samples %v sums %v, want other: 7, 9 and bbb's 2", counts, sums)
	}
}

// TestClusteredPoints: the log-read points carry the cluster under the key,
// and otherwise equal the index's.
func TestClusteredPoints(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t))
	defer s.Close()
	base := time.Now().Add(-time.Minute).UnixMicro()
	var evs []*event.Event
	for i := range 10 {
		e := scored(base+int64(i)*1000, event.Score{Name: "a", Value: float64(i)})
		if i%3 != 0 {
			e.SessionID = event.Some(fmt.Sprintf("s-%d", i%2))
		}
		e.SampleID = event.Some(fmt.Sprintf("q-%d", i))
		evs = append(evs, e)
	}
	mustAppend(t, s, evs)
	key, err := event.ParseClusterKey("session_id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = s.ClusteredPoints(context.Background(), key, func(p *Point) error {
		got = append(got, fmt.Sprintf("%s/%v/%s/%v", p.Cluster, p.HasCluster, p.Sample, p.Scores))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "[/false/q-0/[{a 0}] s-1/true/q-1/[{a 1}] s-0/true/q-2/[{a 2}] /false/q-3/[{a 3}] s-0/true/q-4/[{a 4}] s-1/true/q-5/[{a 5}] /false/q-6/[{a 6}] s-1/true/q-7/[{a 7}] s-0/true/q-8/[{a 8}] /false/q-9/[{a 9}]]"
	if fmt.Sprint(got) != want {
		t.Fatalf("clustered points\n %v\nwant\n %v", got, want)
	}
}
