package experiment

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// benchManager returns a manager with experiment id holding n realistic
// events, stored through the ingest path.
func benchManager(b *testing.B, ids []string, n int) *Manager {
	return benchManagerWith(b, ids, n, loadgen.BatchOptions{})
}

// benchManagerWith is benchManager with events varied by opts.
func benchManagerWith(b *testing.B, ids []string, n int, opts loadgen.BatchOptions) *Manager {
	b.Helper()
	m := NewManager(Options{
		Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: prometheus.NewRegistry()},
	})
	if err := m.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	prices := pricing.Default()
	for k, id := range ids {
		if _, _, err := m.Create(CreateRequest{ID: id, Name: id}); err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(k), 7))
		start := time.Now().Add(-5 * time.Minute)
		for done := 0; done < n; done += 1000 {
			body := loadgen.BatchWith(nil, rng, 1000, start.Add(time.Duration(done)*250*time.Microsecond).UnixMicro(), opts)
			parts, _ := event.Split(body, true)
			evs := make([]*event.Event, len(parts))
			for i, p := range parts {
				e, err := event.Parse(p, time.Now(), prices)
				if err != nil {
					b.Fatal(err)
				}
				evs[i] = e
			}
			if _, err := m.Ingest(id, evs, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	}
	return m
}

// BenchmarkMetrics1M is GET .../metrics of a one-million-event experiment:
// read every stored event, then the exact analysis.
func BenchmarkMetrics1M(b *testing.B) {
	m := benchManager(b, []string{"big"}, 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		r, err := m.Analyze(b.Context(), "big", Filter{})
		if err != nil || r.Summary.TotalEvents != 1_000_000 {
			b.Fatal(r.Summary.TotalEvents, err)
		}
	}
}

// BenchmarkWindows1M is GET .../windows?size=5m of a one-million-event
// experiment.
func BenchmarkWindows1M(b *testing.B) {
	m := benchManager(b, []string{"big"}, 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Windows(b.Context(), "big", Filter{}, 5*time.Minute, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompare1M is GET /api/v1/compare of two one-million-event
// experiments with the default bootstrap.
func BenchmarkCompare1M(b *testing.B) {
	m := benchManager(b, []string{"a", "b"}, 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Compare(b.Context(), []string{"a", "b"}, Filter{}, analysis.CompareOptions{Resamples: analysis.DefaultResamples, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// rss is the process' resident memory in bytes, or 0 where /proc is not.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// BenchmarkComparePaired1M is GET /api/v1/compare of two one-million-event
// experiments that answer the same 100k samples, two scores per event:
// the points index read with its sample ids and scores, then the unpaired
// and the paired comparison (SPEC §13).
func BenchmarkComparePaired1M(b *testing.B) {
	m := benchManagerWith(b, []string{"a", "b"}, 1_000_000, loadgen.BatchOptions{Scores: 2, Samples: 100_000})
	b.ResetTimer()
	for b.Loop() {
		r, err := m.Compare(b.Context(), []string{"a", "b"}, Filter{}, analysis.CompareOptions{Resamples: analysis.DefaultResamples})
		if err != nil || r.Comparison["b"].Paired.NPairs < 99_000 {
			b.Fatal(r.Comparison["b"].Paired.NPairs, err)
		}
	}
}

// BenchmarkExport1M exports a one-million-event experiment, stored out of
// time order across requests, and reports the heap and resident memory it
// added at most.
func BenchmarkExport1M(b *testing.B) {
	m := benchManager(b, []string{"big"}, 1_000_000)
	for _, format := range []string{"jsonl", "csv"} {
		b.Run(format, func(b *testing.B) {
			var peak, peakRSS uint64
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				rssBefore := rss()
				stop := make(chan struct{})
				done := make(chan [2]uint64)
				go func() { // sample the heap and RSS while exporting
					var heapMax, rssMax uint64
					var ms runtime.MemStats
					for {
						select {
						case <-stop:
							done <- [2]uint64{heapMax, rssMax}
							return
						case <-time.After(20 * time.Millisecond):
							runtime.ReadMemStats(&ms)
							if ms.HeapInuse > before.HeapInuse {
								heapMax = max(heapMax, ms.HeapInuse-before.HeapInuse)
							}
							if r := rss(); r > rssBefore {
								rssMax = max(rssMax, r-rssBefore)
							}
						}
					}
				}()
				n, err := m.Export(b.Context(), io.Discard, "big", ExportOptions{Format: format, Flatten: true})
				close(stop)
				grew := <-done
				peak, peakRSS = max(peak, grew[0]), max(peakRSS, grew[1])
				if err != nil || n != 1_000_000 {
					b.Fatal(n, err)
				}
			}
			b.ReportMetric(float64(b.N)*1e6/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(peak)/(1<<20), "MiB-heap-growth")
			b.ReportMetric(float64(peakRSS)/(1<<20), "MiB-rss-growth")
		})
	}
}

// BenchmarkReopen1M is a restart with a one-million-event experiment: the
// log is read, and the points index and the TSDB are checked against it.
func BenchmarkReopen1M(b *testing.B) {
	m := benchManager(b, []string{"big"}, 1_000_000)
	m.Close()
	for b.Loop() {
		again := NewManager(m.opts)
		if err := again.Open(); err != nil {
			b.Fatal(err)
		}
		if err := again.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
