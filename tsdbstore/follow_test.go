package tsdbstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

func TestSamplesOf(t *testing.T) {
	scored := &event.Event{EventName: "eval.sample", Scores: []event.Score{{Name: "a", Value: 1}, {Name: "b", Value: 0.5}, {Name: "c", Value: 0}}}
	trained := &event.Event{EventName: "crucible_train.epoch.stop", Training: &event.Training{Loss: event.Some(0.5), Accuracy: event.Some(0.9)}}
	for _, tc := range []struct {
		name     string
		e        *event.Event
		cfg      MetricsConfig
		overflow event.LabelOverflow
		want     []string
	}{
		{"every number", llmEvent(1, "m", 250), AllMetrics, 0, []string{
			MetricLatency + "=0.25", MetricCost + "=0.025", MetricPromptTokens + "=10", MetricCompletionTokens + "=20", MetricSuccess + "=1"}},
		{"failure is 0", func() *event.Event { e := llmEvent(1, "m", 950); return e }(), MetricsConfig{SuccessRate: true}, 0, []string{MetricSuccess + "=0"}},
		{"metrics_config off", llmEvent(1, "m", 250), MetricsConfig{Latency: true}, 0, []string{MetricLatency + "=0.25"}},
		{"nothing known", &event.Event{EventName: "x"}, AllMetrics, 0, nil},
		{"training numbers whatever the config", trained, MetricsConfig{}, 0, []string{MetricTrainLoss + "=0.5", MetricTrainAccuracy + "=0.9"}},
		{"scores whatever the config", scored, MetricsConfig{}, 0, []string{MetricScore + "{a}=1", MetricScore + "{b}=0.5", MetricScore + "{c}=0"}},
		{"scores past the cap: the first of them under other", scored, MetricsConfig{}, event.OverflowScore(0) | event.OverflowScore(2),
			[]string{MetricScore + "{other}=1", MetricScore + "{b}=0.5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			SamplesOf(tc.e, tc.cfg, tc.overflow, func(m int, score string, v float64) {
				if score != "" {
					got = append(got, fmt.Sprintf("%s{%s}=%g", MetricNames[m], score, v))
					return
				}
				got = append(got, fmt.Sprintf("%s=%g", MetricNames[m], v))
			})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("samples %v, want %v", got, tc.want)
			}
		})
	}
}

// A follower reads exactly the samples the TSDB holds, in log order, and
// resumes from any position it was handed without repeats or gaps.
func TestReadSamplesFollowsCommits(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t))
	defer s.Close()
	start, moved := s.Committed()
	from := start.Position
	read := int64(0)
	base := time.Now().Add(-time.Minute).UnixMicro()
	var all [][]Sample
	var nexts []Position
	for b := range 3 {
		var evs []*event.Event
		for i := range 20 {
			evs = append(evs, llmEvent(base+int64(b*20+i/5)*1000, fmt.Sprintf("m%d", i%2), float64(b*20+i))) // same-ms bursts: slots
		}
		mustAppend(t, s, evs)
		select {
		case <-moved:
		default:
			t.Fatal("Committed's channel did not close after a commit")
		}
		var mark Mark
		mark, moved = s.Committed()
		to := mark.Position
		if err := s.ReadSamples(context.Background(), from, to, func(samples []Sample, next Position) error {
			all = append(all, slices.Clone(samples))
			read += int64(len(samples))
			nexts = append(nexts, next)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if read != mark.Samples {
			t.Fatalf("read %d samples up to the mark, which counts %d", read, mark.Samples)
		}
		from = to
	}
	if len(all) != 3 || nexts[2] != from {
		t.Fatalf("%d frames, last next %v, want 3 and %v", len(all), nexts[len(nexts)-1], from)
	}
	if got, want := sampleSet(slices.Concat(all...)), tsdbSampleSet(t, s); !slices.Equal(got, want) {
		t.Fatalf("followed %d samples, the TSDB holds %d", len(got), len(want))
	}
	// From the middle: the rest, nothing before.
	var rest []Sample
	if err := s.ReadSamples(context.Background(), nexts[0], from, func(samples []Sample, _ Position) error {
		rest = append(rest, samples...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sampleSet(rest), sampleSet(slices.Concat(all[1:]...))) {
		t.Fatal("a read from a frame's next position is not the frames after it")
	}
}

func sampleSet(ss []Sample) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%s %d %g", s.Labels, s.T, s.V)
	}
	slices.Sort(out)
	return out
}

func tsdbSampleSet(t *testing.T, s *Store) []string {
	t.Helper()
	q, err := s.DB().Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var out []Sample
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, ".+"))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			out = append(out, Sample{Labels: set.At().Labels(), T: ts, V: v})
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return sampleSet(out)
}

// A read holds the store open: Close waits for it, a read after Close is
// refused, and a read stops once its context is done.
func TestReadsHaveALifetime(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t))
	frames(t, s, 3, 1000)
	inside, release := make(chan struct{}), make(chan struct{})
	scanned := make(chan error, 1)
	go func() {
		first := true
		scanned <- s.Scan(context.Background(), func(*LogRecord) error {
			if first {
				first = false
				close(inside)
				<-release
			}
			return nil
		})
	}()
	<-inside
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a read was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-scanned; err != nil {
		t.Fatalf("the read in flight: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := s.Scan(context.Background(), func(*LogRecord) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}

	s = openStore(t, t.TempDir(), testOptions(t))
	defer s.Close()
	frames(t, s, 3, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := s.Points(ctx, func(*Point) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n >= 3000 {
		t.Fatalf("after cancel: %d points, err %v", n, err)
	}
}
