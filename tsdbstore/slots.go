package tsdbstore

// The TSDB keeps one sample per series per millisecond: a second sample at an
// occupied millisecond is an error (different value), or silently lost (same
// value, or out of order). Events are microsecond-precise and arrive in
// bursts, so two events of one series often share a millisecond.
//
// Each event therefore gets a slot: the number of earlier events of its
// series at its millisecond. Slot 0 adds no label; slot n > 0 adds the label
// slot="n", which makes it a series of its own. A series has at most
// MaxSlots slots per millisecond; an event beyond that moves to the next
// millisecond with a free slot, so its TSDB time is a little later than the
// event's own (the event log keeps the exact timestamp).
//
// slotTracker counts events per (series, millisecond) inside the
// out-of-order window, one byte per millisecond in chunks of a second,
// allocated only for seconds that have events.

// MaxSlots is the number of events of one series the TSDB takes in one
// millisecond before later ones move to the next millisecond.
const MaxSlots = 100

// maxShiftMs bounds the search for a free millisecond.
const maxShiftMs = 60_000

type secondCounts [1000]uint8

type seriesSlots struct {
	chunks   map[int64]*secondCounts
	lastSec  int64
	lastData *secondCounts
}

type slotTracker struct {
	windowMs int64
	maxMs    int64 // newest millisecond given out (or seen on open)
	series   map[uint64]*seriesSlots
}

func newSlotTracker(windowMs, maxMs int64) *slotTracker {
	return &slotTracker{windowMs: windowMs, maxMs: maxMs, series: make(map[uint64]*seriesSlots)}
}

// minMs is the oldest millisecond the TSDB still takes.
func (t *slotTracker) minMs() int64 {
	return t.maxMs - t.windowMs
}

func (s *seriesSlots) counts(sec int64, create bool) *secondCounts {
	if s.lastData != nil && s.lastSec == sec {
		return s.lastData
	}
	c := s.chunks[sec]
	if c == nil {
		if !create {
			return nil
		}
		c = new(secondCounts)
		s.chunks[sec] = c
	}
	s.lastSec, s.lastData = sec, c
	return c
}

func (t *slotTracker) seriesFor(hash uint64) *seriesSlots {
	s := t.series[hash]
	if s == nil {
		s = &seriesSlots{chunks: make(map[int64]*secondCounts)}
		t.series[hash] = s
	}
	return s
}

// assign gives an event of series hash at ms its TSDB millisecond and slot.
// ok is false when no free slot is found within maxShiftMs.
func (t *slotTracker) assign(hash uint64, ms int64) (at int64, slot uint8, ok bool) {
	s := t.seriesFor(hash)
	for at = ms; at < ms+maxShiftMs; at++ {
		sec, i := floorDivMod(at, 1000)
		c := s.counts(sec, true)
		if c[i] < MaxSlots {
			slot = c[i]
			c[i]++
			t.maxMs = max(t.maxMs, at)
			return at, slot, true
		}
	}
	return 0, 0, false
}

// mark records an event already stored (while rebuilding on open).
func (t *slotTracker) mark(hash uint64, ms int64, slot uint8) {
	t.maxMs = max(t.maxMs, ms)
	sec, i := floorDivMod(ms, 1000)
	c := t.seriesFor(hash).counts(sec, true)
	if c[i] <= slot {
		c[i] = slot + 1
	}
}

// prune forgets seconds older than the window.
func (t *slotTracker) prune() {
	oldest, _ := floorDivMod(t.maxMs-t.windowMs, 1000)
	for h, s := range t.series {
		for sec := range s.chunks {
			if sec < oldest {
				delete(s.chunks, sec)
			}
		}
		s.lastData = nil
		if len(s.chunks) == 0 {
			delete(t.series, h)
		}
	}
}

func floorDivMod(a, b int64) (q, r int64) {
	q, r = a/b, a%b
	if r < 0 {
		q--
		r += b
	}
	return q, r
}
