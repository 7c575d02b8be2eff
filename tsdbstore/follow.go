package tsdbstore

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Following the committed samples: what a queue that sends every raw sample
// elsewhere (remote-write) needs. A follower keeps a Position durably,
// reads the samples after it with ReadSamples, and waits on the channel of
// Committed for more. Positions are frame boundaries of the event log, so
// a follower that restarts from the last position it kept sends no sample
// twice and misses none.

// Sample is one raw sample as the TSDB holds it.
type Sample struct {
	Labels labels.Labels
	Hash   uint64 // Labels.Hash(), computed once per series
	T      int64  // ms
	V      float64
}

// Mark is a point of the log a follower reached: every frame before
// Position, whose events have Samples samples in all.
type Mark struct {
	Position
	Samples int64
}

// scoreSeriesKey names a score's series: the labels, the slot and the
// score's name.
type scoreSeriesKey struct {
	seriesKey
	score string
}

type hashedLabels struct {
	labels.Labels
	hash uint64
}

// Committed returns the mark up to which every frame's samples are
// committed to the TSDB, and a channel closed when it next moves.
func (s *Store) Committed() (Mark, <-chan struct{}) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	a := s.applied.Load()
	return Mark{a.Position, a.Samples}, s.moved
}

// announce closes the channel of Committed after a commit of the frames
// of group, written at once from 'from' to end, and hands their samples
// (s.fed) to the feed: one feed frame per batch, at its log frame's
// positions, so that the feed and the log give the same samples at the
// same positions (a follower may stand between two frames of a group).
func (s *Store) announce(group []*pendingBatch, from, end Position) {
	s.cmu.Lock()
	switch {
	case s.follow == nil:
	case len(group) == 1:
		s.follow.push(feedFrame{from: from, next: end, samples: s.fed})
		s.fed = s.follow.take(len(s.fed))
	default:
		frames := make([][]fedSample, len(group))
		counts := make([]int, len(group))
		for _, k := range s.fedBatch {
			counts[k]++
		}
		for k := range frames {
			frames[k] = s.follow.take(counts[k])
		}
		for i, x := range s.fed {
			k := s.fedBatch[i]
			frames[k] = append(frames[k], x)
		}
		// One write puts a group in one segment: each frame ends where
		// the frames after it begin.
		rest := int64(0)
		for _, b := range group {
			rest += int64(len(b.bufs.frame))
		}
		for k, b := range group {
			rest -= int64(len(b.bufs.frame))
			next := Position{Segment: end.Segment, Offset: end.Offset - rest}
			s.follow.push(feedFrame{from: from, next: next, samples: frames[k]})
			from = next
		}
	}
	close(s.moved)
	s.moved = make(chan struct{})
	s.cmu.Unlock()
}

// ReadSamples calls visit, in log order, with the samples of each log frame
// from 'from' up to 'to' (a position Committed returned) and the position
// just after the frame, from which a later read goes on. The samples are
// valid only during the call of visit that receives them, and not to be
// changed. Frames still in the feed (FollowBuffer) come from memory.
func (s *Store) ReadSamples(ctx context.Context, from, to Position, visit func(samples []Sample, next Position) error) error {
	if err := s.beginRead(); err != nil {
		return err
	}
	defer s.endRead()
	if s.follow != nil {
		// Each frame is copied out under the lock: appends reuse the
		// feed's memory once the frame is let go.
		var buf []Sample
		for from != to {
			if err := ctx.Err(); err != nil {
				return err
			}
			s.cmu.Lock()
			fr, ok := s.follow.frame(from)
			if ok {
				buf = s.follow.appendSamples(buf[:0], fr)
			}
			s.cmu.Unlock()
			if !ok {
				break
			}
			if err := visit(buf, fr.next); err != nil {
				return err
			}
			from = fr.next
		}
		if from == to {
			return nil
		}
	}
	return s.readLogSamples(ctx, from, to, visit)
}

// readLogSamples is ReadSamples from the log: each record decoded again.
func (s *Store) readLogSamples(ctx context.Context, from, to Position, visit func(samples []Sample, next Position) error) error {
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	var (
		ev      event.Event
		batch   []Sample
		current Position
		started bool
		series  = map[seriesKey]*[numMetrics]hashedLabels{}
		scored  = map[scoreSeriesKey]hashedLabels{}
	)
	err := s.log.readRange(from, to, func(r *LogRecord) error {
		if started && r.Pos != current {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := visit(batch, r.Pos); err != nil {
				return err
			}
			batch = batch[:0]
		}
		started, current = true, r.Pos
		if err := dec.DecodeRecord(r.Data, &ev, false); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		l := stored(s.opts.Condition, &ev, r.Flags)
		k := seriesKey{l.condition, l.event, l.model, l.provider, r.Slot}
		lbls, ok := series[k]
		if !ok {
			lbls = new([numMetrics]hashedLabels)
			for m, ls := range s.seriesOf(l, r.Slot) {
				lbls[m] = hashedLabels{ls, ls.Hash()}
			}
			series[k] = lbls
		}
		SamplesOf(&ev, s.opts.Metrics, r.scores, func(m int, score string, v float64) {
			l := lbls[m]
			if m == mScore {
				sk := scoreSeriesKey{k, score}
				sl, ok := scored[sk]
				if !ok {
					ls := scoreLabels(l.Labels, score)
					sl = hashedLabels{ls, ls.Hash()}
					scored[sk] = sl
				}
				l = sl
			}
			batch = append(batch, Sample{Labels: l.Labels, Hash: l.hash, T: r.Ms, V: v})
		})
		return nil
	})
	if err != nil {
		return err
	}
	if started {
		return visit(batch, to)
	}
	return nil
}
