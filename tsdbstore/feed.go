package tsdbstore

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"
)

// The feed keeps the samples of the newest committed frames in memory, as
// the TSDB appender saw them, so a follower that keeps up (remote-write)
// reads them there instead of decompressing and decoding the log again:
// that second decode costs about a sixth of what storing the events does. A
// follower that falls behind the feed, or starts after a restart, reads
// the log; both give the same samples at the same positions.
//
// The feed holds no pointers: a sample names its series by number in the
// feed's table of series, so the garbage collector has nothing to scan in
// it, and the sample slices of frames let go are used again by later
// appends, so the append path allocates nothing for it.

// DefaultFollowBuffer is the feed's size in samples when a store is
// followed: 6 MiB, half a second at 500k samples/s.
const DefaultFollowBuffer = 1 << 18

// feed is a bounded queue of committed frames, oldest first, guarded by
// Store.cmu.
type feed struct {
	max    int // samples kept at most, beside the newest frame
	frames []feedFrame
	held   int
	spare  [][]fedSample  // sample slices of frames let go, for reuse
	series []hashedLabels // by number (fedSample.series)
}

// maxSpare bounds the sample slices kept for reuse: a push lets go of
// about as many frames as it adds.
const maxSpare = 4

// feedFrame is one committed frame: its samples, the mark a follower has
// before it (from) and the position after it (next).
type feedFrame struct {
	from, next Position
	samples    []fedSample
}

// fedSample is a sample of the feed.
type fedSample struct {
	series uint32
	t      int64
	v      float64
}

// push adds the newest committed frame. A frame that does not follow the
// last one (never expected: commits are serialised) starts the feed anew.
func (f *feed) push(fr feedFrame) {
	if n := len(f.frames); n > 0 && f.frames[n-1].next != fr.from {
		for _, old := range f.frames {
			f.recycle(old.samples)
		}
		clear(f.frames)
		f.frames, f.held = f.frames[:0], 0
	}
	drop := 0
	for drop < len(f.frames) && f.held+len(fr.samples) > f.max {
		f.held -= len(f.frames[drop].samples)
		f.recycle(f.frames[drop].samples)
		drop++
	}
	if drop > 0 {
		n := copy(f.frames, f.frames[drop:])
		clear(f.frames[n:])
		f.frames = f.frames[:n]
	}
	f.frames = append(f.frames, fr)
	f.held += len(fr.samples)
}

// recycle keeps s for a later frame, unless enough are kept or s is
// larger than its share of the feed (one very large batch would
// otherwise hold its memory for good).
func (f *feed) recycle(s []fedSample) {
	if len(f.spare) < maxSpare && cap(s) <= f.max/maxSpare {
		f.spare = append(f.spare, s[:0])
	}
}

// take returns an empty sample slice for the next frame: a spare one, or
// a new one of capacity n.
func (f *feed) take(n int) []fedSample {
	if k := len(f.spare); k > 0 {
		s := f.spare[k-1]
		f.spare[k-1] = nil
		f.spare = f.spare[:k-1]
		return s
	}
	return make([]fedSample, 0, n)
}

// frame returns the frame that starts at position p, when the feed still
// holds it. Its samples are the feed's: read them under Store.cmu only.
// Frames are in log order, so it is a binary search: a feed of small
// frames (one event per request) holds tens of thousands of them.
func (f *feed) frame(p Position) (feedFrame, bool) {
	i, ok := slices.BinarySearchFunc(f.frames, p, func(fr feedFrame, p Position) int {
		switch {
		case fr.from.Less(p):
			return -1
		case p.Less(fr.from):
			return 1
		}
		return 0
	})
	if !ok {
		return feedFrame{}, false
	}
	return f.frames[i], true
}

// forgetSeries empties the table of series, while the feed holds no frame
// (the TSDB rebuilt on open numbers every series again).
func (f *feed) forgetSeries() {
	clear(f.series)
	f.series = f.series[:0]
}

// addSeries numbers a series of the feed.
func (f *feed) addSeries(ls labels.Labels, hash uint64) uint32 {
	f.series = append(f.series, hashedLabels{ls, hash})
	return uint32(len(f.series) - 1)
}

// appendSamples appends the samples of fr to dst, with their series'
// labels.
func (f *feed) appendSamples(dst []Sample, fr feedFrame) []Sample {
	for _, s := range fr.samples {
		l := &f.series[s.series]
		dst = append(dst, Sample{Labels: l.Labels, Hash: l.hash, T: s.t, V: s.v})
	}
	return dst
}
