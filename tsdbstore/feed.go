package tsdbstore

import "slices"

// The feed keeps the samples of the newest committed frames in memory, as
// the TSDB appender saw them, so a follower that keeps up (remote-write)
// reads them there instead of decompressing and decoding the log again:
// that second decode costs about a sixth of what storing the events does. A
// follower that falls behind the feed, or starts after a restart, reads
// the log; both give the same samples at the same positions.

// DefaultFollowBuffer is the feed's size in samples when a store is
// followed: about 10 MiB, half a second at 500k samples/s.
const DefaultFollowBuffer = 1 << 18

// feed is a bounded queue of committed frames, oldest first, guarded by
// Store.cmu.
type feed struct {
	max    int // samples kept at most, beside the newest frame
	frames []feedFrame
	held   int
}

// feedFrame is one committed frame: its samples, the mark a follower has
// before it (from) and the position after it (next).
type feedFrame struct {
	from, next Position
	samples    []Sample
}

// push adds the newest committed frame. A frame that does not follow the
// last one (never expected: commits are serialised) starts the feed anew.
func (f *feed) push(fr feedFrame) {
	if n := len(f.frames); n > 0 && f.frames[n-1].next != fr.from {
		f.frames, f.held = f.frames[:0], 0
	}
	drop := 0
	for drop < len(f.frames) && f.held+len(fr.samples) > f.max {
		f.held -= len(f.frames[drop].samples)
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

// from returns the frames from position p up to position to, when the
// feed still holds the frame that starts at p. The slice is the caller's:
// later pushes move the feed's own.
func (f *feed) from(p, to Position) []feedFrame {
	for i, fr := range f.frames {
		if fr.from != p {
			continue
		}
		j := i
		for j < len(f.frames) && f.frames[j].from != to {
			j++
		}
		return slices.Clone(f.frames[i:j])
	}
	return nil
}
