package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
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

// evalPoints are n events of an evaluation run over the samples ids, in a
// random order, each with two quality scores. Every event has its own
// copy of its sample id, as events read from storage do.
func evalPoints(n int, ids []string, seed uint64) []Point {
	rng := rand.New(rand.NewPCG(seed, 7))
	pts := benchPoints(n)
	for i := range pts {
		pts[i].Sample = strings.Clone(ids[rng.IntN(len(ids))])
		pts[i].Scores = []Score{{"exact_match", float64(rng.IntN(2))}, {"judge.helpfulness", math.Round(rng.Float64()*10) / 10}}
	}
	return pts
}

// BenchmarkComparePaired1M compares two one-million-event evaluation runs
// over 100,000 shared samples (ten repetitions each on average): the
// unpaired comparison with 2000 bootstrap resamples, two scores, and the
// paired comparison of every metric.
func BenchmarkComparePaired1M(b *testing.B) {
	ids := make([]string, 100_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("sample-%06d", i)
	}
	base, treat := evalPoints(1_000_000, ids, 1), evalPoints(1_000_000, ids, 2)
	for i := range treat {
		treat[i].LatencyMs *= 0.97
	}
	for b.Loop() {
		Compare(base, [][]Point{treat}, CompareOptions{Resamples: DefaultResamples})
	}
}

// clusteredPoints are benchPoints in sessions: n events over n/20
// sessions in a random order, one in twenty without a session; each event
// has its own copy of its session id, as events read from storage do.
func clusteredPoints(n int, seed uint64) []Point {
	rng := rand.New(rand.NewPCG(seed, 9))
	pts := benchPoints(n)
	for i := range pts {
		if rng.IntN(20) == 0 {
			continue
		}
		pts[i].Cluster, pts[i].HasCluster = fmt.Sprintf("session-%06d", rng.IntN(n/20)), true
	}
	return pts
}

// BenchmarkCompareClustered1M compares two one-million-event experiments
// with clustered standard errors (50,000 sessions each) and the default
// 2000 bootstrap resamples: BenchmarkCompare1M plus the clusters.
func BenchmarkCompareClustered1M(b *testing.B) {
	base, treat := clusteredPoints(1_000_000, 1), clusteredPoints(1_000_000, 2)
	for i := range treat {
		treat[i].LatencyMs *= 0.97
	}
	for b.Loop() {
		Compare(base, [][]Point{treat}, CompareOptions{Resamples: DefaultResamples, Clustered: true})
	}
}

// BenchmarkAnalyzeClustered1M is BenchmarkAnalyze1M with clustered
// standard errors over 50,000 sessions.
func BenchmarkAnalyzeClustered1M(b *testing.B) {
	pts := clusteredPoints(1_000_000, 1)
	for b.Loop() {
		AnalyzeWith(pts, AnalyzeOptions{Clustered: true})
	}
}
