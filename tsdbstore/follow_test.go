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
// resumes from any position it was handed without repeats or gaps: from
// the log, from the feed, and from both when the feed let the oldest
// frames go.
func TestReadSamplesFollowsCommits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		buffer int
	}{{"log", 0}, {"feed", DefaultFollowBuffer}, {"feed holding one frame", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.FollowBuffer = tc.buffer
			followCommits(t, opts)
		})
	}
}

func followCommits(t *testing.T, opts Options) {
	s := openStore(t, t.TempDir(), opts)
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

// The feed holds the samples the log gives back for the same frames, with
// the same positions and hashes: scores, labels past their cap and
// same-millisecond slots included.
func TestFeedEqualsLog(t *testing.T) {
	opts := testOptions(t)
	opts.FollowBuffer = DefaultFollowBuffer
	opts.MaxLabelValues = 2
	s := openStore(t, t.TempDir(), opts)
	defer s.Close()
	start, _ := s.Committed()
	base := time.Now().Add(-time.Minute).UnixMicro()
	for b := range 4 {
		var evs []*event.Event
		for i := range 30 {
			e := llmEvent(base+int64(b*30+i/3)*1000, fmt.Sprintf("m%d", i%4), float64(i))
			if i%2 == 0 {
				e.Scores = []event.Score{{Name: "judge", Value: float64(i) / 30}, {Name: fmt.Sprintf("s%d", i%3), Value: 1}}
			}
			evs = append(evs, e)
		}
		mustAppend(t, s, evs)
	}
	end, _ := s.Committed()
	type frame struct {
		samples []Sample
		next    Position
	}
	read := func(f func(context.Context, Position, Position, func([]Sample, Position) error) error) []frame {
		var out []frame
		if err := f(context.Background(), start.Position, end.Position, func(samples []Sample, next Position) error {
			out = append(out, frame{slices.Clone(samples), next})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	s.cmu.Lock()
	held := len(framesFrom(s.follow, start.Position, end.Position))
	s.cmu.Unlock()
	if held != 4 {
		t.Fatalf("the feed holds %d of the 4 frames", held)
	}
	fed, logged := read(s.ReadSamples), read(s.readLogSamples)
	if len(fed) != 4 || len(logged) != 4 {
		t.Fatalf("%d frames from the feed, %d from the log, want 4", len(fed), len(logged))
	}
	for i := range fed {
		if fed[i].next != logged[i].next {
			t.Fatalf("frame %d: next %v from the feed, %v from the log", i, fed[i].next, logged[i].next)
		}
		if len(fed[i].samples) != len(logged[i].samples) {
			t.Fatalf("frame %d: %d samples from the feed, %d from the log", i, len(fed[i].samples), len(logged[i].samples))
		}
		for j, f := range fed[i].samples {
			l := logged[i].samples[j]
			if !labels.Equal(f.Labels, l.Labels) || f.Hash != l.Hash || f.Hash != f.Labels.Hash() || f.T != l.T || f.V != l.V {
				t.Fatalf("frame %d sample %d: %v from the feed, %v from the log", i, j, f, l)
			}
		}
	}
	var other int
	for _, f := range fed {
		for _, smp := range f.samples {
			if smp.Labels.Get("model") == event.OverflowValue {
				other++
			}
		}
	}
	if other == 0 {
		t.Fatal("no sample under the overflow value: the case is not covered")
	}
}

// A batch whose commit fails (a full disk) reaches neither the TSDB nor the
// feed: a follower reads what the TSDB holds, from memory, as from the log.
func TestFeedSkipsAFailedCommit(t *testing.T) {
	opts := testOptions(t)
	opts.FollowBuffer = DefaultFollowBuffer
	s := openStore(t, t.TempDir(), opts)
	defer s.Close()
	start, _ := s.Committed()
	base := time.Now().Add(-time.Minute).UnixMicro()
	batch := func(b int) []*event.Event {
		var evs []*event.Event
		for i := range 10 {
			evs = append(evs, llmEvent(base+int64(b*10+i)*1000, "m", float64(i)))
		}
		return evs
	}
	mustAppend(t, s, batch(0))
	s.failCommit = func() error { return errors.New("no space left on device") }
	if _, err := s.Append(batch(1), time.Now()); err == nil {
		t.Fatal("the failed commit was acknowledged")
	}
	s.failCommit = nil
	mustAppend(t, s, batch(2))
	end, _ := s.Committed()
	s.cmu.Lock()
	held := len(framesFrom(s.follow, start.Position, end.Position))
	s.cmu.Unlock()
	if held != 2 {
		t.Fatalf("the feed holds %d frames from the start, want the 2 committed", held)
	}
	read := func(f func(context.Context, Position, Position, func([]Sample, Position) error) error) []Sample {
		var out []Sample
		if err := f(context.Background(), start.Position, end.Position, func(samples []Sample, _ Position) error {
			out = append(out, samples...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	fed, logged := read(s.ReadSamples), read(s.readLogSamples)
	if want := tsdbSampleSet(t, s); !slices.Equal(sampleSet(fed), want) || !slices.Equal(sampleSet(logged), want) || int64(len(fed)) != end.Samples {
		t.Fatalf("feed %d samples, log %d, TSDB %d, mark %d", len(fed), len(logged), len(want), end.Samples)
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
