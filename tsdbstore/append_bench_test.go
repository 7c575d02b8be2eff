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
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name     string
		scores   int
		followed bool
	}{{"plain", 0, false}, {"2-scores", 2, false}, {"followed", 0, true}} {
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
			var all [batches][]*event.Event
			start := time.Now().Add(-5 * time.Minute)
			for k := range all {
				now := start.Add(time.Duration(k) * 250 * time.Millisecond)
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
				evs := all[i%batches]
				if i >= batches { // the batches again, 16 s later: in time order, none too old
					for _, e := range evs {
						e.Timestamp += batches * 250_000
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
