package analysis

import (
	"math"
	"testing"
)

func TestDescribeScore(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name                       string
		xs                         []float64
		count                      int
		mean, sd, median, min, max float64
		lo, hi                     float64
	}{
		{"none", nil, 0, nan, nan, nan, nan, nan, nan, nan},
		{"one", []float64{0.5}, 1, 0.5, 0, 0.5, 0.5, 0.5, nan, nan},
		// t(0.975, 1) = 12.706204736174707; sd = √2/2, √n = √2.
		{"two", []float64{1, 0}, 2, 0.5, math.Sqrt2 / 2, 0.5, 0, 1, 0.5 - 12.706204736174707/2, 0.5 + 12.706204736174707/2},
		{"constant", []float64{3, 3, 3}, 3, 3, 0, 3, 3, 3, 3, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := DescribeScore(append([]float64(nil), c.xs...))
			same := func(got Null, want float64) bool {
				if math.IsNaN(want) {
					return !got.Valid()
				}
				return math.Abs(float64(got)-want) <= 1e-12*math.Max(1, math.Abs(want))
			}
			if d.Count != c.count || !same(d.Mean, c.mean) || !same(d.StdDev, c.sd) || !same(d.Median, c.median) ||
				!same(d.Min, c.min) || !same(d.Max, c.max) || !same(d.MeanCI95[0], c.lo) || !same(d.MeanCI95[1], c.hi) {
				t.Errorf("got %+v", d)
			}
		})
	}
}

// TestAnalyzeScoreColumns: events with different sets of score names (the
// column of an event's i-th score changes) still put every value under
// its own name.
func TestAnalyzeScoreColumns(t *testing.T) {
	pts := []Point{
		{Scores: []Score{{"a", 1}}},
		{Scores: []Score{{"a", 2}, {"b", 10}}},
		{Scores: []Score{{"b", 20}}},
		{},
		{Scores: []Score{{"a", 3}, {"c", math.NaN()}}},
		{Scores: []Score{{"b", 30}, {"c", 7}}},
	}
	r := Analyze(pts)
	want := map[string][2]float64{"a": {3, 2}, "b": {3, 20}, "c": {1, 7}}
	if len(r.Scores) != len(want) {
		t.Fatalf("scores %v", r.Scores)
	}
	for name, w := range want {
		if d := r.Scores[name]; d.Count != int(w[0]) || d.Mean != Null(w[1]) {
			t.Errorf("%s: %+v, want count %v mean %v", name, d, w[0], w[1])
		}
	}
}

// TestAnalyzeWithoutScoresAllocatesPerCall: without scores, the score
// statistics cost no allocation per event.
func TestAnalyzeWithoutScoresAllocatesPerCall(t *testing.T) {
	small, large := benchPoints(100), benchPoints(20_000)
	a := testing.AllocsPerRun(3, func() { Analyze(small) })
	b := testing.AllocsPerRun(3, func() { Analyze(large) })
	if b > a {
		t.Errorf("%v allocations for 100 events, %v for 20000", a, b)
	}
}
