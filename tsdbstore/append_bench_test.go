package tsdbstore

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

// BenchmarkAppend measures Store.Append of 1000-event batches of realistic
// LLM events: dedup, window, label cap, slots, the log frame (records and
// compression), the TSDB appends and commit, and the points index. The
// batches are decoded before the timer runs. "followed" keeps the feed a
// remote-write queue reads (FollowBuffer), with no queue reading it.
// "interleaved" sends batches whose times overlap out of order, as
// concurrent clients do, so that part of every batch is out of order in
// the TSDB.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name        string
		scores      int
		followed    bool
		interleaved bool
	}{{"plain", 0, false, false}, {"2-scores", 2, false, false}, {"followed", 0, true, false}, {"interleaved", 0, false, true}} {
		b.Run(c.name, func(b *testing.B) {
			opts, scores := testOptions(b), c.scores
			if c.followed {
				opts.FollowBuffer = DefaultFollowBuffer
			}
			s := openStore(b, b.TempDir(), opts)
			defer s.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			prices := pricing.Default()
			const batches = 64
			spacing := 250 * time.Millisecond
			if c.interleaved {
				spacing = 2 * time.Millisecond // a batch spans 4 ms
			}
			var all [batches][]*event.Event
			start := time.Now().Add(-5 * time.Minute)
			for k := range all {
				now := start.Add(time.Duration(k) * spacing)
				body := loadgen.BatchWith(nil, rng, 1000, now.UnixMicro(), loadgen.BatchOptions{Scores: scores})
				parts, _ := event.Split(body, true)
				for _, p := range parts {
					e, err := event.Parse(p, time.Now(), prices)
					if err != nil {
						b.Fatal(err)
					}
					all[k] = append(all[k], e)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := i % batches
				if c.interleaved {
					k ^= 1 // 1, 0, 3, 2, ...
				}
				evs := all[k]
				if i >= batches { // the batches again, later: none too old
					for _, e := range evs {
						e.Timestamp += batches * spacing.Microseconds()
					}
				}
				if _, err := s.Append(evs, time.Now()); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
