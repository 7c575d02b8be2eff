package analysis

import (
	"math"
	"math/rand/v2"
	"testing"
)

func benchPoints(n int) []Point {
	rng := rand.New(rand.NewPCG(1, 2))
	pts := make([]Point, n)
	for i := range pts {
		pts[i] = Point{
			TimestampUs: 1_764_220_000_000_000 + int64(i)*3600, Event: []string{"req_llm.request.stop", "req_llm.request.exception"}[i%2],
			LatencyMs: math.Exp(6 + 0.8*rng.NormFloat64()), CostUSD: rng.Float64() * 0.05, Success: int8(rng.IntN(2)),
			HasTokens: true, Prompt: 100, Completion: 50, Total: 150,
		}
	}
	return pts
}

// BenchmarkAnalyze1M is the exact analysis of one million events.
func BenchmarkAnalyze1M(b *testing.B) {
	pts := benchPoints(1_000_000)
	for b.Loop() {
		Analyze(pts) // reads points, reorders only its own copies
	}
}

// BenchmarkWindows1M cuts one million events (an hour, in time order as
// the log mostly holds them) into 5-minute windows.
func BenchmarkWindows1M(b *testing.B) {
	pts := benchPoints(1_000_000)
	for b.Loop() {
		Windows(pts, 300_000_000, 300_000_000)
	}
}

// BenchmarkCompare1M compares two one-million-event experiments with the
// default 2000 bootstrap resamples.
func BenchmarkCompare1M(b *testing.B) {
	base, treat := benchPoints(1_000_000), benchPoints(1_000_000)
	for i := range treat {
		treat[i].LatencyMs *= 0.97
	}
	for b.Loop() {
		Compare(base, [][]Point{treat}, CompareOptions{Resamples: DefaultResamples})
	}
}
