package tsdbstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// interleavedBatches are n batches of size events whose times interleave,
// as concurrent clients' do: batch k has the events at base + (i·n + k)·300
// µs. Each event has a client id, so the dedup set is exercised.
func interleavedBatches(n, size int, base int64, tag string) [][]*event.Event {
	batches := make([][]*event.Event, n)
	for k := range batches {
		for i := range size {
			e := llmEvent(base+int64(i*n+k)*300, []string{"gpt-4", "gpt-4o"}[i%2], float64(100+k*size+i))
			e.EventID, e.ClientID = fmt.Sprintf("%s-b%d-i%d", tag, k, i), true
			batches[k] = append(batches[k], e)
		}
	}
	return batches
}

type appendOutcome struct {
	res []Result
	err error
}

// appendQueued appends the batches while the TSDB lock is held, each
// queued behind the one before, and lets them go together once all wait;
// during runs under the lock before they go.
func appendQueued(t *testing.T, s *Store, batches [][]*event.Event, during func()) []appendOutcome {
	t.Helper()
	out := make([]appendOutcome, len(batches))
	var wg sync.WaitGroup
	s.tmu.Lock()
	for k, b := range batches {
		wg.Go(func() {
			res, err := s.Append(b, time.Now())
			out[k] = appendOutcome{res, err}
		})
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.qmu.Lock()
			n := len(s.queue)
			s.qmu.Unlock()
			if n == k+1 {
				break
			}
			if time.Now().After(deadline) {
				s.tmu.Unlock()
				t.Fatalf("batch %d never queued (%d waiting)", k, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if during != nil {
		during()
	}
	s.tmu.Unlock()
	wg.Wait()
	return out
}

// storeQueued is appendQueued of batches that must be stored whole.
func storeQueued(t *testing.T, s *Store, batches [][]*event.Event) {
	t.Helper()
	for k, o := range appendQueued(t, s, batches, nil) {
		if o.err != nil || countStatus(o.res, Stored) != len(batches[k]) {
			t.Fatalf("batch %d: %v %+v", k, o.err, o.res)
		}
	}
}

// reopenHolds closes s, opens the store in dir again and checks that it
// holds exactly evs: their count and their samples.
func reopenHolds(t *testing.T, s *Store, dir string, evs []*event.Event) {
	t.Helper()
	s.Close()
	s = openStore(t, dir, testOptions(t))
	defer s.Close()
	if s.Count() != int64(len(evs)) {
		t.Fatalf("count %d after reopen, want %d", s.Count(), len(evs))
	}
	checkSamples(t, s.DB(), evs)
}

// outOfOrderSamples reads the TSDB's count of samples it took out of order.
func outOfOrderSamples(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "prometheus_tsdb_head_out_of_order_samples_appended_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelOf(m, "type") == "float" {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatal("no prometheus_tsdb_head_out_of_order_samples_appended_total{type=\"float\"}")
	return 0
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestGroupCommit: batches waiting for the TSDB lock are committed
// together, their samples merged in time order, their frames in the log
// in the order they queued, and everything survives a reopen. Committed
// one by one, the same batches go out of order in the TSDB.
func TestGroupCommit(t *testing.T) {
	base := time.Now().Add(-time.Minute).UnixMicro()
	for _, grouped := range []bool{true, false} {
		t.Run(fmt.Sprintf("grouped=%v", grouped), func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t)
			opts.DetailedTSDBMetrics = true
			s := openStore(t, dir, opts)
			batches := interleavedBatches(3, 50, base, "g")
			if grouped {
				storeQueued(t, s, batches)
			} else {
				for _, b := range batches {
					if res := mustAppend(t, s, b); countStatus(res, Stored) != len(b) {
						t.Fatalf("%+v", res)
					}
				}
			}
			ooo := outOfOrderSamples(t, opts.Registerer.(prometheus.Gatherer))
			if grouped && ooo != 0 {
				t.Errorf("%v samples out of order in the TSDB, want 0: a group appends in time order", ooo)
			}
			if !grouped && ooo == 0 {
				t.Errorf("no sample out of order: the batches do not interleave, so this test shows nothing")
			}
			var evs []*event.Event
			for _, b := range batches {
				evs = append(evs, b...)
			}
			checkSamples(t, s.DB(), evs)

			// The log: one frame per batch, in queue order, each holding
			// its batch's events in time order.
			var frames []Position
			var ids []string
			if err := s.log.readRange(Position{}, s.log.end(), func(r *LogRecord) error {
				if len(frames) == 0 || frames[len(frames)-1] != r.Pos {
					frames = append(frames, r.Pos)
				}
				var e event.Event
				dec := event.GetDecoder()
				defer event.PutDecoder(dec)
				if err := dec.DecodeRecord(r.Data, &e, false); err != nil {
					return err
				}
				ids = append(ids, e.EventID)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(frames) != len(batches) {
				t.Errorf("%d frames in the log, want %d", len(frames), len(batches))
			}
			for i, e := range evs {
				if i >= len(ids) || ids[i] != e.EventID {
					t.Fatalf("log record %d is not %s (log has %d records)", i, e.EventID, len(ids))
				}
			}
			var points []string
			if err := s.Points(context.Background(), func(p *Point) error {
				points = append(points, fmt.Sprint(p.TimestampUs))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for i, e := range evs {
				if i >= len(points) || points[i] != fmt.Sprint(e.Timestamp) {
					t.Fatalf("point %d is not at %d (index has %d points)", i, e.Timestamp, len(points))
				}
			}
			if applied, end := s.applied.Load().Position, s.log.end(); applied != end {
				t.Fatalf("replay position %v, log end %v", applied, end)
			}
			reopenHolds(t, s, dir, evs)
		})
	}
}

// TestGroupCommitFailure: when a group's commit or its log write fails (a
// full disk), no batch of it is stored or acknowledged, and their client
// ids may be sent again.
func TestGroupCommitFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, s *Store) (undo func())
		cause error // what the storage error wraps, beside ErrStorage
	}{
		{"TSDB commit fails", failCommits, fullDisk},
		{"log write fails", failLogWrites, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, testOptions(t))
			batches := interleavedBatches(3, 20, time.Now().Add(-time.Minute).UnixMicro(), "f")
			start := s.log.end()
			undo := tc.fault(t, s)
			for k, o := range appendQueued(t, s, batches, nil) {
				if !errors.Is(o.err, ErrStorage) || tc.cause != nil && !errors.Is(o.err, tc.cause) || o.res != nil {
					t.Fatalf("batch %d: got %v %+v, want the storage error and no results", k, o.err, o.res)
				}
			}
			if s.Count() != 0 || s.log.end() != start {
				t.Fatalf("count %d, log end %v after a failed group: want nothing stored", s.Count(), s.log.end())
			}
			if counts, _ := sampleCounts(t, s.DB()); len(counts) != 0 {
				t.Fatalf("the TSDB holds %v after a failed group, want nothing", counts)
			}
			undo()
			var evs []*event.Event
			for _, b := range batches {
				if res := mustAppend(t, s, b); countStatus(res, Stored) != len(b) {
					t.Fatalf("sent again: %+v, want all stored (their ids released)", res)
				}
				evs = append(evs, b...)
			}
			reopenHolds(t, s, dir, evs)
		})
	}
}

// TestGroupCommitRefusedFallsBack: when the TSDB refuses an event of a
// group (it moved on past the out-of-order window since the event was
// checked), the batches are committed one by one: the refused events are
// rejected, the others stored.
func TestGroupCommitRefusedFallsBack(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t))
	defer s.Close()
	now := time.Now().Add(-time.Minute)
	window := testOptions(t).OutOfOrderWindow
	old := interleavedBatches(1, 10, now.Add(-window/2).UnixMicro(), "old")[0]
	fresh := interleavedBatches(1, 10, now.UnixMicro(), "new")[0]
	// Events of old's series just after it, so that old's samples are out
	// of order (the TSDB takes in-order samples up to an hour old).
	prime := interleavedBatches(1, 2, now.Add(-window/2+10*time.Millisecond).UnixMicro(), "prime")[0]
	mustAppend(t, s, prime)
	out := appendQueued(t, s, [][]*event.Event{old, fresh}, func() {
		// Another writer moves the TSDB's newest time more than a window
		// past the old batch, and less than one past the fresh batch.
		app := s.db.Appender(context.Background())
		if _, err := app.Append(0, labels.FromStrings("__name__", "other"), now.Add(window/2+time.Second).UnixMilli(), 1); err != nil {
			t.Error(err)
		}
		if err := app.Commit(); err != nil {
			t.Error(err)
		}
	})
	if out[0].err != nil || out[1].err != nil {
		t.Fatalf("errors %v, %v; want per-event results", out[0].err, out[1].err)
	}
	if countStatus(out[1].res, Stored) != len(fresh) {
		t.Fatalf("fresh batch: %+v, want every event stored", out[1].res)
	}
	// Old events in a series of their own (a slot above 0) are in order
	// for it and stored; the others are refused.
	stored := append(prime, fresh...)
	var refused *event.Event
	for i, r := range out[0].res {
		switch {
		case r.Status == Stored:
			stored = append(stored, old[i])
		case r.Status == Rejected && errors.Is(r.Err, ErrTooOld):
			refused = old[i]
		default:
			t.Fatalf("old event %d: %+v, want stored or rejected as too old", i, r)
		}
	}
	if refused == nil {
		t.Fatal("no old event refused: the test shows nothing")
	}
	if s.Count() != int64(len(stored)) {
		t.Fatalf("count %d, want %d", s.Count(), len(stored))
	}
	checkSamples(t, s.DB(), stored)
	if res := mustAppend(t, s, []*event.Event{refused}); res[0].Status == Duplicate {
		t.Fatalf("a rejected event's id stays reserved: %+v", res)
	}
}

// TestGroupCommitFeed: a remote-write follower reads a group's samples
// from the feed frame by frame, at the positions and with the samples it
// would read from the log, also from a position inside the group.
func TestGroupCommitFeed(t *testing.T) {
	opts := testOptions(t)
	opts.FollowBuffer = DefaultFollowBuffer
	s := openStore(t, t.TempDir(), opts)
	defer s.Close()
	start, _ := s.Committed()
	batches := interleavedBatches(3, 30, time.Now().Add(-time.Minute).UnixMicro(), "feed")
	storeQueued(t, s, batches)
	end, _ := s.Committed()
	if n := end.Samples - start.Samples; n != int64(len(batches)*30*5) {
		t.Errorf("%d samples committed, want %d", n, len(batches)*30*5)
	}
	// read gives each frame's position after it and its samples, sorted.
	read := func(from Position, fromLog bool) []string {
		var frames []string
		visit := func(samples []Sample, next Position) error {
			var got []string
			for _, x := range samples {
				got = append(got, fmt.Sprint(x.Labels.String(), x.T, x.V))
			}
			slices.Sort(got)
			frames = append(frames, fmt.Sprint(next, got))
			return nil
		}
		var err error
		if fromLog {
			err = s.readLogSamples(context.Background(), from, end.Position, visit)
		} else {
			err = s.ReadSamples(context.Background(), from, end.Position, visit)
		}
		if err != nil {
			t.Fatal(err)
		}
		return frames
	}
	fed, logged := read(start.Position, false), read(start.Position, true)
	if len(logged) != len(batches) {
		t.Fatalf("%d frames in the log, want %d", len(logged), len(batches))
	}
	if !slices.Equal(fed, logged) {
		t.Errorf("the feed and the log disagree:\nfeed %v\nlog  %v", fed, logged)
	}
	// From the end of the group's first frame, the feed still answers.
	var inner Position
	if err := s.readLogSamples(context.Background(), start.Position, end.Position, func(_ []Sample, next Position) error {
		if inner == (Position{}) {
			inner = next
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.cmu.Lock()
	_, inFeed := s.follow.frame(inner)
	s.cmu.Unlock()
	if !inFeed {
		t.Errorf("no feed frame starts at %v, the end of the group's first log frame", inner)
	}
	if got, want := read(inner, false), logged[1:]; !slices.Equal(got, want) {
		t.Errorf("from %v: feed %v, want %v", inner, got, want)
	}
}
