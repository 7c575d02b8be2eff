package tsdbstore

import (
	"slices"
	"testing"
)

func TestFeed(t *testing.T) {
	pos := func(o int64) Position { return Position{Segment: 1, Offset: o} }
	frame := func(from, next int64, n int) feedFrame {
		return feedFrame{from: pos(from), next: pos(next), samples: make([]fedSample, n)}
	}
	froms := func(frs []feedFrame) []int64 {
		var out []int64
		for _, fr := range frs {
			out = append(out, fr.from.Offset)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		max      int
		push     []feedFrame
		from, to int64
		want     []int64
	}{
		{"all held", 100, []feedFrame{frame(0, 10, 5), frame(10, 20, 5), frame(20, 30, 5)}, 0, 30, []int64{0, 10, 20}},
		{"from the middle", 100, []feedFrame{frame(0, 10, 5), frame(10, 20, 5), frame(20, 30, 5)}, 10, 30, []int64{10, 20}},
		{"up to a committed mark before the newest", 100, []feedFrame{frame(0, 10, 5), frame(10, 20, 5), frame(20, 30, 5)}, 0, 20, []int64{0, 10}},
		{"the oldest let go", 12, []feedFrame{frame(0, 10, 5), frame(10, 20, 5), frame(20, 30, 5)}, 0, 30, nil},
		{"the rest still held", 12, []feedFrame{frame(0, 10, 5), frame(10, 20, 5), frame(20, 30, 5)}, 10, 30, []int64{10, 20}},
		{"a frame larger than the feed is held alone", 3, []feedFrame{frame(0, 10, 5), frame(10, 20, 5)}, 10, 20, []int64{10}},
		{"a position inside a frame is not a frame's start", 100, []feedFrame{frame(0, 10, 5)}, 5, 10, nil},
		{"a gap starts the feed anew", 100, []feedFrame{frame(0, 10, 5), frame(15, 20, 5)}, 0, 20, nil},
		{"after a gap", 100, []feedFrame{frame(0, 10, 5), frame(15, 20, 5)}, 15, 20, []int64{15}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &feed{max: tc.max}
			for _, fr := range tc.push {
				f.push(fr)
			}
			got := framesFrom(f, pos(tc.from), pos(tc.to))
			if !slices.Equal(froms(got), tc.want) {
				t.Fatalf("frames from %d: %v, want %v", tc.from, froms(got), tc.want)
			}
			held := 0
			for _, fr := range f.frames {
				held += len(fr.samples)
			}
			if held != f.held || (len(f.frames) > 1 && held > tc.max) {
				t.Fatalf("holds %d samples (counted %d), max %d", held, f.held, tc.max)
			}
		})
	}
}

// framesFrom returns the frames the feed holds from p up to 'to', as
// ReadSamples reads them.
func framesFrom(f *feed, p, to Position) []feedFrame {
	var out []feedFrame
	for p != to {
		fr, ok := f.frame(p)
		if !ok {
			break
		}
		out = append(out, fr)
		p = fr.next
	}
	return out
}

func TestFeedReusesFramesLetGo(t *testing.T) {
	pos := func(o int64) Position { return Position{Segment: 1, Offset: o} }
	f := &feed{max: 20} // spares of up to 5 samples
	first := append(f.take(5), make([]fedSample, 5)...)
	f.push(feedFrame{from: pos(0), next: pos(10), samples: first})
	if got := f.take(5); len(got) != 0 || cap(got) != 5 || &got[:1][0] == &first[0] {
		t.Fatalf("with nothing let go, take gave a slice of len %d, cap %d (a new one expected)", len(got), cap(got))
	}
	for o := int64(10); o < 50; o += 10 {
		f.push(feedFrame{from: pos(o), next: pos(o + 10), samples: make([]fedSample, 5)})
	}
	if _, ok := f.frame(pos(0)); ok {
		t.Fatal("the first frame is still held past the feed's size")
	}
	if got := f.take(5); cap(got) != cap(first) || &got[:1][0] != &first[0] {
		t.Fatal("take did not reuse the samples of the frame let go")
	}
	f.recycle(make([]fedSample, 6))
	if len(f.spare) != 0 {
		t.Fatal("kept a slice larger than its share of the feed")
	}
	for range 2 * maxSpare {
		f.recycle(make([]fedSample, 1))
	}
	if len(f.spare) > maxSpare {
		t.Fatalf("keeps %d spare slices, at most %d", len(f.spare), maxSpare)
	}
}

// A feed of one-event frames holds many; each is found by its start only.
func TestFeedFindsFramesAmongMany(t *testing.T) {
	f := &feed{max: 1 << 20}
	const n = 5000
	at := func(i int) Position { return Position{Segment: 1 + i/1000, Offset: int64(i%1000) * 10} } // several segments
	for i := range n {
		f.push(feedFrame{from: at(i), next: at(i + 1), samples: make([]fedSample, 1)})
	}
	for _, i := range []int{0, 1, 999, 1000, 2500, n - 1} {
		p := at(i)
		if fr, ok := f.frame(p); !ok || fr.from != p {
			t.Fatalf("frame %d at %v: %v %v", i, p, fr.from, ok)
		}
		if _, ok := f.frame(Position{Segment: p.Segment, Offset: p.Offset + 5}); ok {
			t.Fatalf("found a frame starting inside frame %d", i)
		}
	}
	if got := len(framesFrom(f, at(0), at(n))); got != n {
		t.Fatalf("read %d frames in turn, want %d", got, n)
	}
}
