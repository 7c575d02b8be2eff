package tsdbstore

import (
	"context"
	"fmt"

	"github.com/prometheus/prometheus/storage"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Batches that wait for the TSDB lock are committed together (a group
// commit): the first to get the lock appends the samples of every waiting
// batch in one time-ordered pass, writes their frames with one write and
// commits once. Concurrent clients send batches whose times overlap;
// committed one after the other, a fifth of their samples came out of
// order for the TSDB, which costs more than an in-order append on commit
// and again when the head is compacted. Merged, they are in order but
// where a batch reaches back before an earlier group's newest sample.
// Each batch keeps its own log frame, and its own frame in the feed a
// remote-write follower reads (announce).

// maxKeptGroupFrame bounds the buffer a group's frames are joined in that
// is kept for the next group.
const maxKeptGroupFrame = 16 << 20

// pendingBatch is a batch that has its slots and its frame and waits to be
// committed; results and err are its answer once done (set under tmu).
type pendingBatch struct {
	events    []*event.Event
	place     []placed // in TSDB time order
	hashes    []uint64
	results   []Result
	reserved  []string // client event ids reserved in the dedup set
	bufs      *appendBuffers
	arrivalUs int64

	refused map[int]error // by event index: what the TSDB refused of the last append
	done    bool
	err     error
}

// store commits b, alone or with the batches waiting beside it.
func (s *Store) store(b *pendingBatch) ([]Result, error) {
	s.qmu.Lock()
	s.queue = append(s.queue, b)
	s.qmu.Unlock()
	s.tmu.Lock()
	defer s.tmu.Unlock()
	if !b.done { // else an earlier holder of the lock committed it
		s.qmu.Lock()
		group := s.queue
		s.queue = s.nextQueue[:0]
		s.nextQueue = group
		s.qmu.Unlock()
		s.commitGroup(group)
		clear(group)
	}
	if b.err != nil {
		return nil, b.err
	}
	return b.results, nil
}

// commitGroup commits the batches of group, together when it can.
func (s *Store) commitGroup(group []*pendingBatch) {
	if len(group) == 1 {
		s.commitOne(group[0])
		return
	}
	app := s.db.AppenderV2(context.Background())
	samples, refused := s.appendMerged(app, group)
	if refused {
		// Some event is now too old for the TSDB (rare): each batch on
		// its own, which rejects exactly those events.
		_ = app.Rollback()
		for _, b := range group {
			s.commitOne(b)
		}
		return
	}
	s.groupFrame = s.groupFrame[:0]
	for _, b := range group {
		s.groupFrame = append(s.groupFrame, b.bufs.frame...)
	}
	s.writeAndCommit(app, group, s.groupFrame, samples)
	if cap(s.groupFrame) > maxKeptGroupFrame {
		s.groupFrame = nil // a rare large group keeps no memory for good
	}
}

// appendMerged appends the samples of every batch of group in TSDB time
// order, merging the batches (each in time order already). It returns how
// many there are and whether the TSDB refused any; each batch's refused
// holds the events it refused. With a feed, the samples are collected in
// s.fed, and the batch of each in s.fedBatch.
func (s *Store) appendMerged(app storage.AppenderV2, group []*pendingBatch) (samples int, refused bool) {
	var fed *[]fedSample
	if s.follow != nil {
		s.fed, s.fedBatch = s.fed[:0], s.fedBatch[:0]
		fed = &s.fed
	}
	for _, b := range group {
		b.refused = nil
	}
	next := make([]int, len(group)) // each batch's next placed event
	for {
		k := -1
		for j, b := range group {
			if next[j] < len(b.place) && (k < 0 || b.place[next[j]].ms < group[k].place[next[k]].ms) {
				k = j
			}
		}
		if k < 0 {
			return samples, refused
		}
		b := group[k]
		p := b.place[next[k]]
		next[k]++
		n, err := s.appendSamples(app, b.events[p.i], p.ms, p.refs, p.scores, fed)
		samples += n
		if err != nil {
			if b.refused == nil {
				b.refused = make(map[int]error)
			}
			b.refused[p.i], refused = err, true
		}
		for fed != nil && len(s.fedBatch) < len(s.fed) {
			s.fedBatch = append(s.fedBatch, uint32(k))
		}
	}
}

// commitOne commits one batch: what a group of one does, and what a
// larger group falls back to when the TSDB refuses one of its events.
func (s *Store) commitOne(b *pendingBatch) {
	b.done = true
	one := []*pendingBatch{b}
	app := s.db.AppenderV2(context.Background())
	samples, refused := s.appendMerged(app, one)
	if refused {
		// The TSDB moved on since the window check (another append brought
		// newer events): reject what it refused and encode the rest again.
		_ = app.Rollback()
		var ids []string
		kept := b.place[:0]
		for _, p := range b.place {
			if _, bad := b.refused[p.i]; !bad {
				kept = append(kept, p)
				continue
			}
			b.results[p.i] = tooOld(s.opts.OutOfOrderWindow)
			if b.events[p.i].ClientID {
				ids = append(ids, b.events[p.i].EventID)
			}
		}
		s.release(ids)
		b.place = kept
		if len(b.place) == 0 {
			return
		}
		s.encodeFrame(b.bufs, b.events, b.place, b.hashes, b.arrivalUs)
		app = s.db.AppenderV2(context.Background())
		if samples, refused = s.appendMerged(app, one); refused {
			_ = app.Rollback()
			s.release(b.reserved)
			b.err = fmt.Errorf("%w: the TSDB refused %d events twice", ErrStorage, len(b.refused))
			return
		}
	}
	s.writeAndCommit(app, one, b.bufs.frame, samples)
}

// writeAndCommit writes the frames of group (frame, in queue order), makes
// them durable when every answer waits for an fsync, commits app and
// publishes them. An error means no batch of group is stored: the frames
// are taken back out of the log, and the TSDB commits only after the log
// holds them.
func (s *Store) writeAndCommit(app storage.AppenderV2, group []*pendingBatch, frame []byte, samples int) {
	fail := func(err error) {
		for _, b := range group {
			s.release(b.reserved)
			b.done, b.err = true, err
		}
	}
	if err := s.log.write(frame); err != nil {
		_ = app.Rollback()
		fail(fmt.Errorf("%w: %w", ErrStorage, err))
		return
	}
	undo := func(err error) {
		if uerr := s.log.undo(s.opts.SyncInterval == 0); uerr != nil {
			s.logger.Error("could not take a failed batch back out of the event log; it may come back after a restart", "err", uerr)
		}
		fail(err)
	}
	if s.opts.SyncInterval == 0 {
		if err := s.log.sync(); err != nil {
			_ = app.Rollback()
			undo(fmt.Errorf("%w: fsync event log: %w", ErrStorage, err))
			return
		}
	}
	if err := s.commit(app); err != nil {
		undo(fmt.Errorf("%w: TSDB commit: %w", ErrStorage, err))
		return
	}
	s.committed(group, samples)
}

// committed publishes the frames of the committed batches: the log's end,
// the event count, the replay position, the feed and the points index.
func (s *Store) committed(group []*pendingBatch, samples int) {
	s.log.publish()
	n := 0
	for _, b := range group {
		b.done = true
		n += len(b.place)
		for _, p := range b.place {
			b.results[p.i].Overflow = overflowOf(p.flags) | p.scores
		}
	}
	s.count.Add(int64(n))
	before := s.applied.Load()
	mark := replayMark{s.log.end(), before.Samples + int64(samples), before.Damaged}
	s.applied.Store(&mark)
	s.announce(group, before.Position, mark.Position)
	if s.pointsOK.Load() {
		ordered := make([]*event.Event, 0, n)
		for _, b := range group {
			for _, p := range b.place {
				ordered = append(ordered, b.events[p.i])
			}
		}
		if err := s.points.add(ordered); err != nil {
			// Reads fall back to the log; the next start rebuilds the index.
			s.pointsOK.Store(false)
			s.logger.Error("points index write failed; reading the log instead", "err", err)
		}
	}
}
