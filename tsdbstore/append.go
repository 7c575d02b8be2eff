package tsdbstore

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/storage"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// appendBuffers are the scratch space of one Append.
type appendBuffers struct{ json, records, frame []byte }

var bufferPool = sync.Pool{New: func() any { return new(appendBuffers) }}

// placed is an accepted event with its TSDB time, slot and series.
type placed struct {
	i      int
	ms     int64
	slot   uint8
	flags  uint8 // which labels overflowed
	refs   *seriesRefs
	scores event.LabelOverflow // which score names overflowed

}

// Append stores events that arrived at arrival. Events must be fully
// enriched. The result has one entry per event. A non-nil error means a
// storage failure: no event of the batch is acknowledged.
//
// Under the store lock Append drops duplicates, checks the out-of-order
// window and hands out slots; it encodes and compresses the records without
// a lock; then, under the TSDB lock, it appends the samples, writes the log
// frame and commits, together with the batches that waited for the lock
// beside it (group.go). TSDB appends are serialised on purpose: with
// concurrent appenders sharing series, the live head (v0.316.0) lost sight
// of about 0.2% of committed out-of-order samples until a restart
// (TestConcurrentAppends caught it).
func (s *Store) Append(events []*event.Event, arrival time.Time) ([]Result, error) {
	results := make([]Result, len(events))
	if len(events) == 0 {
		return results, nil
	}
	arrivalUs := arrival.UnixMicro()
	hashes := make([]uint64, len(events))
	order := make([]int, len(events))
	for i := range events {
		order[i] = i
	}
	// Time order, so no sample of the batch is out of order against another.
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(events[a].Timestamp, events[b].Timestamp) })

	place := make([]placed, 0, len(events))
	var reserved []string
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.dedup.advance(arrivalUs)
	// The window is measured from the newest event stored before this
	// batch: the batch is appended in time order, so an event far older
	// than a later one of the same batch is no trouble for the TSDB.
	minMs := s.slots.minMs()
	for _, i := range order {
		e := events[i]
		if e.ClientID && s.dedup.contains(e.EventID) {
			results[i].Status = Duplicate
			continue
		}
		ms := e.TimestampMs()
		if ms < minMs {
			results[i] = tooOld(s.opts.OutOfOrderWindow)
			continue
		}
		lbls, flags := s.labels.place(s.opts.Condition, e)
		hashes[i] = seriesHash(lbls)
		at, slot, ok := s.slots.assign(hashes[i], ms)
		if !ok {
			results[i] = Result{Status: Rejected, Err: ErrNoSlot}
			continue
		}
		if e.ClientID {
			s.dedup.add(e.EventID, arrivalUs) // reserved now, released on failure
			reserved = append(reserved, e.EventID)
		}
		place = append(place, placed{i: i, ms: at, slot: slot, flags: flags, refs: s.refsFor(lbls, slot), scores: s.scoreNames.place(e)})
	}
	if len(place) == 0 {
		s.mu.Unlock()
		return results, nil
	}
	s.active.Add(1)
	s.mu.Unlock()
	defer s.active.Done()

	bufs := bufferPool.Get().(*appendBuffers)
	defer bufferPool.Put(bufs)
	// Shifted events can break time order; sort by TSDB time.
	slices.SortStableFunc(place, func(a, b placed) int { return cmp.Compare(a.ms, b.ms) })
	s.encodeFrame(bufs, events, place, hashes, arrivalUs)

	return s.store(&pendingBatch{events: events, place: place, hashes: hashes, results: results,
		reserved: reserved, bufs: bufs, arrivalUs: arrivalUs})
}

// release takes client event ids of events not stored back out of the
// dedup set.
func (s *Store) release(ids []string) {
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.dedup.remove(id)
	}
}

// commit commits an append, unless a test makes it fail.
func (s *Store) commit(app storage.AppenderV2) error {
	if s.failCommit != nil {
		if err := s.failCommit(); err != nil {
			_ = app.Rollback()
			return err
		}
	}
	return app.Commit()
}

func tooOld(window time.Duration) Result {
	return Result{Status: Rejected, Err: fmt.Errorf("%w (%s)", ErrTooOld, window)}
}

// encodeFrame encodes the placed events as one compressed log frame.
func (s *Store) encodeFrame(bufs *appendBuffers, events []*event.Event, place []placed, hashes []uint64, arrivalUs int64) {
	bufs.records = bufs.records[:0]
	for _, p := range place {
		e := events[p.i]
		clientID := ""
		if e.ClientID {
			clientID = e.EventID
		}
		bufs.json = e.AppendRecord(bufs.json[:0], e.Raw)
		bufs.records = appendRecord(bufs.records, arrivalUs, p.ms, hashes[p.i], p.slot, p.flags, p.scores, clientID, bufs.json)
	}
	bufs.frame = appendFrame(bufs.frame[:0], bufs.records)
}
