package tsdbstore

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

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

// BenchmarkRawTSDB measures prometheus/tsdb alone with the store's options:
// commits of 5000 in-order samples (1000 events of five numbers) spread
// over series as many as the store's slots make under load, with values
// and times as the load generator's. It is the floor under the TSDB's
// share of Store.Append; "wal=false" shows what the TSDB's own WAL costs.
func BenchmarkRawTSDB(b *testing.B) {
	for _, series := range []int{20, 2000} {
		for _, wal := range []bool{true, false} {
			b.Run("series="+strconv.Itoa(series)+"/wal="+strconv.FormatBool(wal), func(b *testing.B) {
				o := tsdbOptions(testOptions(b))
				if !wal {
					o.WALSegmentSize = -1
				}
				db, err := tsdb.Open(b.TempDir(), nil, nil, o, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				ls := make([]labels.Labels, series)
				refs := make([]storage.SeriesRef, series)
				for i := range ls {
					ls[i] = labels.FromStrings(labels.MetricName, "m"+strconv.Itoa(i%5), "experiment_id", "exp", "slot", strconv.Itoa(i/5))
				}
				rng := rand.New(rand.NewPCG(1, 2))
				t := time.Now().UnixMilli()
				samples := 0
				b.ReportAllocs()
				for b.Loop() {
					app := db.AppenderV2(context.Background())
					for k := range 5000 {
						i := k % series
						if i == 0 {
							t++
						}
						v := 0.2 + rng.ExpFloat64()*0.8 // a latency in seconds
						if r, err := app.Append(refs[i], ls[i], 0, t, v, nil, nil, storage.AOptions{}); err != nil {
							b.Fatal(err)
						} else {
							refs[i] = r
						}
					}
					if err := app.Commit(); err != nil {
						b.Fatal(err)
					}
					samples += 5000
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
			})
		}
	}
}
