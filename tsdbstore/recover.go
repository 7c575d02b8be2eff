package tsdbstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// openDerived brings the points index and the TSDB up to the log: each is
// checked against it and rebuilt from it when it does not match.
func (s *Store) openDerived() error {
	var err error
	if s.points, err = openPointIndex(s.dir); err != nil {
		return fmt.Errorf("open points index: %w", err)
	}
	if reason := s.points.check(s.count.Load()); reason != nil {
		s.logger.Warn("the points index does not match the event log; rebuilding it from the log", "reason", reason)
		if err := s.rebuildPoints(); err != nil {
			return fmt.Errorf("rebuild points index: %w", err)
		}
	}
	s.pointsOK.Store(true)
	if err := s.replay(s.readApplied()); err != nil {
		return err
	}
	return s.verifyTSDB()
}

// verifyTSDB checks that the TSDB holds exactly the samples of the logged
// events, and rebuilds it from the log when it does not: the log is the
// source of truth, and a TSDB can lose samples (its directory deleted, a WAL
// repair) or hold some the log no longer has (skipped damage). Retention
// deletes samples on purpose, so with retention only the log is trusted
// and no count is compared.
func (s *Store) verifyTSDB() error {
	if s.opts.Retention > 0 {
		return nil
	}
	want := s.applied.Load().Samples
	have, err := s.countSamples()
	if err != nil {
		return fmt.Errorf("count TSDB samples: %w", err)
	}
	if have == want {
		return nil
	}
	start := time.Now()
	s.logger.Warn("the TSDB does not match the event log; rebuilding it from the log",
		"tsdb_samples", have, "log_samples", want)
	if err := s.closeTSDB(); err != nil {
		return fmt.Errorf("close TSDB for rebuild: %w", err)
	}
	// The TSDB is derived data of this store: the log rebuilds all of it.
	if err := os.RemoveAll(filepath.Join(s.dir, tsdbDir)); err != nil {
		return fmt.Errorf("remove TSDB for rebuild: %w", err)
	}
	s.series = make(map[seriesKey]*seriesRefs)
	if s.follow != nil {
		s.follow.forgetSeries() // alone: Open has not returned
	}
	if err := s.openTSDB(); err != nil {
		return err
	}
	if err := s.replay(replayMark{}); err != nil {
		return err
	}
	if have, err = s.countSamples(); err != nil {
		return fmt.Errorf("count TSDB samples: %w", err)
	}
	want = s.applied.Load().Samples
	if have != want {
		return fmt.Errorf("%w: the TSDB rebuilt from the event log holds %d samples, the log's events %d", ErrStorage, have, want)
	}
	s.logger.Info("rebuilt the TSDB from the event log", "samples", have, "duration", time.Since(start))
	return nil
}

// countSamples counts every sample in the TSDB.
func (s *Store) countSamples() (int64, error) {
	q, err := s.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, ".+"))
	var n int64
	var it chunkenc.Iterator
	for ss.Next() {
		it = ss.At().Iterator(it)
		for it.Next() != chunkenc.ValNone {
			n++
		}
		if err := it.Err(); err != nil {
			return n, err
		}
	}
	return n, ss.Err()
}

type slotMark struct {
	hash uint64
	ms   int64
	slot uint8
}

// markSlots records stored events inside the out-of-order window in the slot
// tracker, so events arriving after a restart do not reuse their slots.
func (s *Store) markSlots(recs []slotMark) []slotMark {
	for _, r := range recs {
		s.slots.maxMs = max(s.slots.maxMs, r.ms)
	}
	minMs := s.slots.maxMs - s.slots.windowMs
	for _, r := range recs {
		if r.ms >= minMs {
			s.slots.mark(r.hash, r.ms, r.slot)
		}
	}
	s.slots.prune()
	return recs[:0]
}

// replayMark is the replay position: every frame before it is committed
// to the TSDB, and those frames' events have Samples samples.
type replayMark struct {
	Position
	Samples int64
	// Damaged is how many damaged log regions were known when Samples was
	// counted: once more are found, the count is redone from the log.
	Damaged int64
}

func (s *Store) readApplied() replayMark {
	var m struct {
		Position
		Samples *int64
		Damaged int64
	}
	b, err := os.ReadFile(filepath.Join(s.dir, appliedFile))
	if err != nil || json.Unmarshal(b, &m) != nil || m.Samples == nil || m.Segment < 0 || m.Offset < 0 ||
		m.Damaged != s.log.Damage().Frames {
		return replayMark{} // replay everything: re-appending is harmless
	}
	return replayMark{m.Position, *m.Samples, m.Damaged}
}

func (s *Store) writeApplied(m replayMark) error {
	b, _ := json.Marshal(m)
	tmp := filepath.Join(s.dir, appliedFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, appliedFile)); err != nil {
		return err
	}
	return syncFile(s.dir) // the rename itself
}

// rebuildPoints writes the points index anew from the log.
func (s *Store) rebuildPoints() error {
	start := time.Now()
	had := s.points.count
	if err := s.points.reset(); err != nil {
		return err
	}
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	batch := make([]event.Event, 0, 4096)
	ptrs := make([]*event.Event, 0, 4096)
	flush := func() error {
		ptrs = ptrs[:0]
		for i := range batch {
			ptrs = append(ptrs, &batch[i])
		}
		err := s.points.add(ptrs)
		batch = batch[:0]
		return err
	}
	err := s.log.readRange(Position{}, s.log.end(), func(r *LogRecord) error {
		batch = batch[:len(batch)+1]
		if err := dec.DecodeRecord(r.Data, &batch[len(batch)-1], false); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = s.points.sync()
	}
	if err == nil {
		s.logger.Info("rebuilt the points index from the event log", "events", s.points.count, "had", had, "duration", time.Since(start))
	}
	return err
}

// replay appends the samples of every log record after from to the TSDB.
func (s *Store) replay(from replayMark) error {
	end := s.log.end()
	if end.Less(from.Position) {
		// The log ends before what the TSDB was said to hold (a write lost
		// in a power cut): count from the start.
		from = replayMark{}
	}
	if !from.Less(end) {
		s.applied.Store(&from)
		s.written = from
		return nil
	}
	start := time.Now()
	app := s.db.AppenderV2(context.Background())
	n := 0
	samples := from.Samples
	var ev event.Event
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	err := s.log.readRange(from.Position, end, func(r *LogRecord) error {
		if err := dec.DecodeRecord(r.Data, &ev, false); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		k, err := s.appendSamples(app, &ev, r.Ms, s.refsFor(stored(s.opts.Condition, &ev, r.Flags), r.Slot), r.scores, nil)
		samples += int64(k)
		if err != nil {
			s.logger.Warn("replay: TSDB did not take a sample", "event_id", ev.EventID, "err", err)
		}
		n++
		if n%10000 == 0 {
			if err := app.Commit(); err != nil {
				return err
			}
			app = s.db.AppenderV2(context.Background())
		}
		return nil
	})
	if err != nil {
		_ = app.Rollback()
		return fmt.Errorf("replay event log into TSDB: %w", err)
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("replay event log into TSDB: %w", err)
	}
	if n > 0 {
		s.logger.Info("replayed event log into TSDB", "events", n, "duration", time.Since(start))
	}
	if err := syncWriteAheadLogs(filepath.Join(s.dir, tsdbDir)); err != nil {
		return fmt.Errorf("replay event log into TSDB: %w", err)
	}
	mark := replayMark{end, samples, s.log.Damage().Frames}
	s.applied.Store(&mark)
	s.written = mark
	return s.writeApplied(mark)
}
